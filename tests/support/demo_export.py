"""A complete export without a training run: seeded synthetic data, an untrained network.

Test and benchmark support, not part of the package: :func:`demo_export` builds the
datamodule on :func:`geoclim.data.synthetic.make_dataset` (or its station variant), sizes
the network of ``conf/model/<model>.yaml`` from it (:mod:`tests.registry`, no second list of
models), exports the network, checks parity on test batches and embeds the same metadata a
real export carries. The weights are random (seeded), so the forecasts mean nothing;
everything around them is the real path. Scripts use it as ``python -m scripts.<name>`` from
the repository root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoclim.data.datamodule import GeoDataModule
from geoclim.data.synthetic import make_dataset, make_station_dataset
from geoclim.data.task import ForecastTask
from geoclim.errors import ConfigError
from geoclim.export.metadata import ExportMetadata
from geoclim.export.onnx import ExportResult, export_net, write_metadata
from geoclim.export.parity import check_parity
from geoclim.export.run import build_metadata, test_batches

DEMO_TASK = ForecastTask(
    targets=("no2",),
    past_inputs=("o3", "t2m", "u10", "v10", "blh"),
    future_inputs=("hour_sin", "hour_cos", "u10", "v10", "blh"),
    static_inputs=("elevation", "land_sea_mask", "emissions"),
    input_steps=24,
    horizon=24,
)
"""24 h of history -> 24 h of NO2, with forecast wind / boundary layer and static fields."""


@dataclass
class DemoExport:
    """What :func:`demo_export` built.

    Attributes:
        path: the .onnx file.
        net: the (untrained) torch network, eval mode.
        datamodule: the set-up datamodule.
        metadata: the embedded metadata.
        result: export details.

    """

    path: Path
    net: nn.Module
    datamodule: GeoDataModule
    metadata: ExportMetadata
    result: ExportResult


SMALL = {"base_channels": 8, "dropout": 0.0, "anchor": "none"}
"""Sizes that keep demo networks small, applied where the model's config has the key. The
demo networks are untrained: without an anchor their forecasts depend on every input (an
untrained gated network forecasts persistence exactly, whatever its other inputs)."""


def build_net(model: str, dims: dict[str, int], **sizes: Any) -> nn.Module:
    """The network of ``conf/model/<model>.yaml``, small, sized by ``dims`` (``task.dims``)."""
    from hydra.utils import instantiate

    from geoclim.training.instantiate import net_dims
    from tests.registry import models

    nets = {e.name: e for e in models(kind="network")}
    if model not in nets:
        raise ConfigError(f"unknown demo model {model!r}; valid are {sorted(nets)}")
    config = dict(nets[model].config["net"])
    config.update({k: v for k, v in SMALL.items() if k in config})
    config.update(net_dims(config["_target_"], dims) | sizes)
    return instantiate(config).eval()


def demo_export(
    out: str | os.PathLike,
    *,
    model: str = "lstm",
    task: ForecastTask = DEMO_TASK,
    layout: str = "grid",
    grid: tuple[int, int] = (6, 5),
    days: float = 16,
    seed: int = 0,
    batch_size: int = 64,
    dynamic_spatial: bool | None = None,
    exporter: str = "auto",
    **sizes: Any,
) -> DemoExport:
    """Build, export and parity-check an untrained demo model.

    Args:
        out: destination .onnx file.
        model: a network of ``conf/model`` (``"lstm"``, ``"tft"``: points; ``"cnn"``: grids).
        task: the forecasting task.
        layout: ``"grid"`` or ``"station"`` (stations need a point model).
        grid: ``(nlat, nlon)`` of the synthetic grid (stations: ``nlat`` stations).
        days: length of the synthetic data.
        seed: data and weight seed.
        batch_size: datamodule batch size.
        dynamic_spatial: passed to :func:`~geoclim.export.onnx.export_net`.
        exporter: passed to :func:`~geoclim.export.onnx.export_net`. ``"auto"`` is what
            ``geoclim-export`` does (dynamo first); the serving tests' fixtures take
            ``"torchscript"``, about 30x faster per network and the same graph contract
            (named inputs, dynamic batch, embedded metadata) for the adapter.
        **sizes: network size overrides (``hidden_size``...).

    Returns:
        The export and what it was built from.

    """
    variables = tuple(dict.fromkeys((*task.dynamic_variables,)))
    from tests.registry import MODELS

    spatial = MODELS[model].spatial if model in MODELS else False
    if layout == "station":
        if spatial:
            raise ConfigError(f"the {model} demo needs gridded data; use layout='grid'")
        ds = make_station_dataset(
            grid[0], variables, days=days, seed=seed, static=task.static_inputs
        )
    else:
        ds = make_dataset(
            variables, nlat=grid[0], nlon=grid[1], days=days, seed=seed, static=task.static_inputs
        )
    window = {"patch": None} if spatial else {"patch": 1}
    dm = GeoDataModule(
        ds,
        task,
        window=window,
        batch_size=batch_size,
        seed=seed,
        splits={"fractions": (0.5, 0.25, 0.25)},
    )
    dm.setup()
    torch.manual_seed(seed)
    net = build_net(model, dm.dims, **sizes)
    batches = test_batches(dm, 2)
    out = Path(out)
    result = export_net(net, batches[0], out, dynamic_spatial=dynamic_spatial, exporter=exporter)
    parity = check_parity(net, out, batches)
    meta = build_metadata(
        dm,
        net,
        result,
        parity,
        config={"demo": {"model": model, "layout": layout, "seed": seed}},
        provenance={"note": "demo export: untrained weights"},
    )
    write_metadata(out, meta)
    return DemoExport(out, net, dm, meta, result)
