"""Fixtures: the exact-truth benchmark net and a tiny synthetic datamodule (session-scoped)."""

import pytest
import torch

from geoclim.data.datamodule import GeoDataModule
from geoclim.data.synthetic import make_dataset
from geoclim.data.task import ForecastTask

TASK = ForecastTask(
    targets=("no2",),
    past_inputs=("t2m", "u10"),
    future_inputs=("hour_sin", "u10"),
    static_inputs=("elevation",),
    input_steps=6,
    horizon=3,
)


@pytest.fixture(scope="session")
def one_thread():
    # the test machine is shared: intra-op threads only add contention on tiny nets
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def benchmark_fit(one_thread):
    from geoclim.explain.benchmark import fit_benchmark_net, make_benchmark

    bench = make_benchmark(n=3000, seed=0)
    net, r2 = fit_benchmark_net(bench, epochs=25, seed=0)
    return bench, net, r2


def make_dm(task=TASK, patch=1, quantiles=(), layout="grid", **kwargs):
    from dataclasses import replace

    task = replace(task, quantiles=tuple(quantiles))
    variables = task.dynamic_variables
    if layout == "station":
        from geoclim.data.synthetic import make_station_dataset

        ds = make_station_dataset(4, variables, days=5, seed=0, static=task.static_inputs)
    else:
        ds = make_dataset(variables, nlat=3, nlon=4, days=5, static=task.static_inputs, **kwargs)
    dm = GeoDataModule(
        ds, task, window={"patch": patch}, splits={"fractions": (0.5, 0.25, 0.25)}, batch_size=16
    )
    dm.setup()
    return dm


@pytest.fixture(scope="session")
def grid_dm():
    return make_dm()
