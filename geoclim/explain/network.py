"""Explain a trained network on a datamodule's split: sample, attribute, assemble.

:func:`explain_network` draws (seeded) samples of a split at the selected places, runs
:func:`geoclim.explain.captum.attribute_batch` on them batch by batch and assembles the
attribution Dataset in the target's physical units, with the samples' init times and places
as coordinates (see :func:`geoclim.explain.layout.attribution_dataset`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from tqdm.auto import tqdm

from geoclim.errors import ConfigError
from geoclim.explain.baselines import train_modes
from geoclim.explain.captum import attribute_batch
from geoclim.explain.layout import INPUT_VARIABLE, LAG, InputLayout, attribution_dataset
from geoclim.explain.target import (
    ExplainTarget,
    inside,
    is_spatial,
    sample_coordinates,
    select_samples,
)


def explain_network(
    net: nn.Module,
    dm: Any,
    *,
    method: str = "integrated_gradients",
    target: ExplainTarget | dict | None = None,
    split: str = "test",
    baseline: str = "climatology",
    max_samples: int | None = 256,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    **kwargs: Any,
) -> xr.Dataset:
    """Attributions of a network on (a sub-sample of) a split's samples.

    Args:
        net: the bare network (``module.net``); moved to no device, put in eval mode.
        dm: the set-up :class:`~geoclim.data.datamodule.GeoDataModule` it was trained on.
        method: one of :data:`geoclim.explain.captum.METHODS`.
        target: the explained scalar (:class:`ExplainTarget` or its dict).
        split: ``train``, ``val`` or ``test``.
        baseline: one of :data:`geoclim.explain.baselines.BASELINES`.
        max_samples: explain at most this many samples, drawn at random (seeded) among the
            split's samples at the selected places; ``None``: all.
        batch_size: samples per attribution call.
        seed: sub-sampling seed.
        progress: show a progress bar.
        **kwargs: method options of :func:`attribute_batch` (``n_steps``, ``ablation``,
            ``block``, ``n_samples``, ``stdevs``, ``sigma``).

    Returns:
        The attribution Dataset (see :func:`geoclim.explain.layout.attribution_dataset`),
        plus ``prediction`` and ``baseline_prediction`` ``(sample, lead_time)`` of the
        explained scalar and, for integrated gradients, the completeness residual ``delta``.

    """
    dm.setup()
    net.eval()
    task, layout = dm.task, InputLayout.from_task(dm.task)
    resolved = ExplainTarget.from_config(target).resolve(task)
    rows = select_samples(dm, split, resolved.spec, max_samples, seed)
    spatial = is_spatial(dm)
    cell_mask = _cell_mask(dm, resolved.spec) if spatial else None
    device = next(net.parameters()).device
    if cell_mask is not None:
        cell_mask = cell_mask.to(device)
    dataset = dm.dataset(split)
    if "category_baseline" not in kwargs and baseline != "blur":
        kwargs["category_baseline"] = train_modes(dm, seed=seed)
    reference = None
    if method == "gradient_shap" and kwargs.pop("reference", None) == "train":
        ref_rows = select_samples(dm, "train", ExplainTarget(), 64, seed)
        reference = _to(dm.dataset("train")[ref_rows], device)
    parts: list[dict[str, np.ndarray]] = []
    chunks = range(0, rows.size, batch_size)
    for s in tqdm(chunks, desc=f"explain {method}", disable=not progress, leave=False):
        batch = _to(dataset[rows[s : s + batch_size]], device)
        ref = None if reference is None else _match(reference, batch["past"].shape[0])
        parts.append(
            attribute_batch(
                net,
                batch,
                method,
                resolved,
                layout,
                baseline=baseline,
                normalizer=dm.normalizer,
                cell_mask=cell_mask,
                reference=ref,
                **kwargs,
            )
        )
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return _to_dataset(merged, dm, rows, dataset, resolved, layout, method, baseline, kwargs)


def _to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _match(reference: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    """Reference fields, cut or tiled to ``n`` rows (Captum draws among them per sample)."""
    return {k: v[torch.arange(n) % v.shape[0]] for k, v in reference.items()}


def _cell_mask(dm: Any, spec: ExplainTarget) -> Tensor | None:
    """``(H, W)`` 0/1 output cells of a whole-grid model inside ``spec.region``."""
    from geoclim.types import LATITUDE, LONGITUDE

    if dm.spec.patch is not None:
        raise ConfigError(
            "spatial attributions need whole-grid samples (window.patch: null, the cnn "
            f"default); this run cuts {dm.spec.patch} x {dm.spec.patch} tiles"
        )
    if not spec.region:
        return None
    lat, lon = np.meshgrid(dm.ds[LATITUDE].values, dm.ds[LONGITUDE].values, indexing="ij")
    mask = inside(lat, lon, spec.region)
    if not mask.any():
        raise ConfigError(f"target.region {dict(spec.region)} contains no grid cell")
    return torch.from_numpy(mask.astype(np.float32))


def _to_dataset(merged, dm, rows, dataset, resolved, layout, method, baseline, kwargs):
    from geoclim.types import LATITUDE, LEAD_TIME, LONGITUDE, TIME

    ds = dm.ds
    t, y, x = dataset.index.decode(rows)
    times = ds[TIME].values
    space: dict[str, np.ndarray] = {}
    if is_spatial(dm):  # whole grids: a sample is an init time; only occlusion keeps cells
        sample_coords: dict[str, np.ndarray] = {"init_time": times[t]}
        if method == "occlusion" or kwargs.get("maps"):
            space = {LATITUDE: ds[LATITUDE].values, LONGITUDE: ds[LONGITUDE].values}
    else:
        sample_coords = sample_coordinates(ds, t, y, x)
    step = times[1] - times[0]
    leads = np.asarray(resolved.leads) if resolved.spec.per_lead else np.asarray([0])
    lead_time = (leads * step).astype("timedelta64[ns]")
    scale, units = _scale(dm, resolved.variable)
    cube = merged["cube"] * scale
    extra = {
        k: (("sample", LEAD_TIME), merged[k] * scale)
        for k in ("prediction", "baseline_prediction", "delta")
        if k in merged
    }
    attrs = {
        "method": method,
        "baseline": baseline,
        "units": units,
        **resolved.describe(),
        **{
            f"option_{k}": int(v) if isinstance(v, bool) else v
            for k, v in kwargs.items()
            if isinstance(v, (int, float, str))
        },
    }
    if kwargs.get("category_baseline"):
        attrs["category_baseline"] = ", ".join(
            f"{k}={v}" for k, v in kwargs["category_baseline"].items()
        )
    if method == "feature_ablation" and kwargs.get("ablation", "cell") != "cell":
        attrs["ablation"] = kwargs["ablation"]
    if cube.ndim == 4 + len(space):  # (sample, lead, variable, lag[, lat, lon])
        out = attribution_dataset(
            cube,
            layout,
            lead_time,
            sample_coords=sample_coords,
            space_coords=space,
            extra=extra,
            attrs=attrs,
            category_cube=merged["category_cube"] * scale if "category_cube" in merged else None,
        )
    else:
        out = _reduced_dataset(
            cube, layout, lead_time, sample_coords, space, extra, attrs, method, kwargs
        )
    out["prediction"].attrs["long_name"] = "explained scalar f(x)"
    out["baseline_prediction"].attrs["long_name"] = "explained scalar at the baseline"
    return out


def _reduced_dataset(cube, layout, lead_time, sample_coords, space, extra, attrs, method, kw):
    """Occlusion maps ``(V, H, W)`` or grouped ablations ``(V,)`` / ``(lag,)``."""
    from geoclim.types import LEAD_TIME

    if method == "occlusion" or kw.get("ablation") == "variable":
        last = (INPUT_VARIABLE, *space)
    else:
        last = (LAG,)
    coords: dict[str, Any] = {
        "sample": np.arange(cube.shape[0]),
        LEAD_TIME: lead_time,
        **{k: ("sample", v) for k, v in sample_coords.items()},
        **space,
    }
    if INPUT_VARIABLE in last:
        coords[INPUT_VARIABLE] = list(layout.variables)
        coords["input_kind"] = (INPUT_VARIABLE, layout.kinds())
    else:
        coords[LAG] = layout.lags
    data = {"attribution": (("sample", LEAD_TIME, *last), cube.astype(np.float32))}
    data |= {k: (d, np.asarray(v)) for k, (d, v) in extra.items()}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _scale(dm: Any, variable: str) -> tuple[float, str]:
    """Factor to physical units of the target and the units label."""
    from geoclim.data import variables

    stats = dm.normalizer.stats.get(variable) if dm.normalizer is not None else None
    if stats is None:
        return 1.0, "normalised"
    if stats.log:
        return 1.0, f"normalised log1p({variable})"
    return float(stats.std), variables.get(variable).units
