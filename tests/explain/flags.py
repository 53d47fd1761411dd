"""A tiny station dataset whose target is driven by a CF-flag (categorical) input.

``no2(t + 1) = 20 + 6 [wd(t) = E] - 4 [wd(t) = W] + noise``: the wind sector at the init time
drives lead 1; ``sky`` (a categorical) and ``noise`` (continuous) are decoys, ``site`` a
static categorical. Shared by the explain and serving tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import xarray as xr

from geoclim.data.datamodule import GeoDataModule
from geoclim.data.task import ForecastTask

WD = {"flag_values": np.arange(4, dtype=np.int8), "flag_meanings": "N E S W"}
SKY = {"flag_values": np.array([1, 2], dtype=np.int8), "flag_meanings": "clear cloudy"}
SITE = {"flag_values": np.array([0, 1], dtype=np.int8), "flag_meanings": "urban rural"}
EFFECT = np.array([0.0, 6.0, 0.0, -4.0])  # by wd code
FLAG_TASK = ForecastTask(
    targets=("no2",),
    past_inputs=("wd", "sky", "noise"),
    static_inputs=("site",),
    input_steps=3,
    horizon=2,
)


def flag_dataset(n_times: int = 24 * 20, n_stations: int = 4, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    wd = rng.integers(0, 4, (n_times, n_stations)).astype(np.float64)
    wd[rng.random(wd.shape) < 0.02] = np.nan  # missing sectors: all-zero one-hot
    no2 = np.full((n_times, n_stations), 20.0)
    no2[1:] += EFFECT[np.nan_to_num(wd[:-1], nan=0).astype(int)]
    no2 += rng.normal(0, 0.5, no2.shape)
    sky = rng.integers(1, 3, (n_times, n_stations)).astype(np.int8)
    return xr.Dataset(
        {
            "no2": (
                ("time", "station"),
                no2.astype(np.float32),
                {"units": "ppb", "long_name": "NO2"},
            ),
            "wd": (("time", "station"), wd, dict(WD, long_name="wind sector")),
            "sky": (("time", "station"), sky, dict(SKY, long_name="sky")),
            "noise": (
                ("time", "station"),
                rng.normal(0, 1, no2.shape).astype(np.float32),
                {"units": "1", "long_name": "decoy"},
            ),
            "site": (
                "station",
                np.arange(n_stations, dtype=np.int8) % 2,
                dict(SITE, long_name="site"),
            ),
        },
        coords={
            "time": pd.date_range("2022-01-01", periods=n_times, freq="h"),
            "station": [f"s{i}" for i in range(n_stations)],
            "latitude": ("station", np.linspace(40.0, 42.0, n_stations)),
            "longitude": ("station", np.linspace(-80.0, -78.0, n_stations)),
        },
    )


def flag_dm(task: ForecastTask = FLAG_TASK, **kwargs) -> GeoDataModule:
    dm = GeoDataModule(
        flag_dataset(**kwargs),
        task,
        window={"patch": 1},
        splits={"fractions": (0.6, 0.2, 0.2)},
        batch_size=128,
    )
    dm.setup()
    return dm


def train_flag_net(dm: GeoDataModule, epochs: int = 8, seed: int = 0) -> torch.nn.Module:
    from tests.support.demo_export import build_net

    torch.manual_seed(seed)
    net = build_net("lstm", dm.dims, hidden_size=16)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(epochs):
        for batch in dm.loader("train", shuffle=True):
            p = net(batch)["prediction"]
            loss = (((p - batch["target"]) ** 2) * batch["target_mask"]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


def export_flag_model(out, dm: GeoDataModule, net: torch.nn.Module):
    """Export ``net`` with its metadata (the real export path), parity-checked."""
    from pathlib import Path

    from geoclim.export.onnx import export_net, write_metadata
    from geoclim.export.parity import check_parity
    from geoclim.export.run import build_metadata, test_batches

    out = Path(out)
    batches = test_batches(dm, 2)
    result = export_net(net, batches[0], out)
    parity = check_parity(net, out, batches)
    meta = build_metadata(
        dm,
        net,
        result,
        parity,
        config={"demo": {"model": "lstm", "layout": "station", "seed": 0}},
        provenance={"note": "tests.explain.flags: a briefly trained LSTM"},
    )
    write_metadata(out, meta)
    return out
