"""Baselines of the attribution methods, in normalised space (``baseline=``).

* ``"climatology"`` (default) -- the train-block mean of every variable, which is **0 in
  normalised space** for dynamic and static channels (the normaliser is fitted on train);
  calendar encodings also get 0, their mean over a full cycle. A per-variable mean, not a
  seasonal cycle: the attribution answers "why does this forecast differ from the forecast
  made from average conditions".
* ``"zeros"`` -- zero in **physical** units (no pollution, 0 K is not meant: each variable's
  physical 0 pushed through the normaliser); useful for concentrations, odd for temperature.
* ``"blur"`` -- the input smoothed by a Gaussian in time (``sigma`` steps; also in space on
  grid patches): attributes the fine structure (peaks, fronts), not the level.

Categorical (CF flag) inputs are one-hot channels: their baseline is always a valid
one-hot, never a fractional mixture. ``climatology`` and ``zeros`` put each at the category
named in ``category_baseline`` (by default :func:`train_modes`, the most frequent train
category: the categorical analogue of the train mean) and leave the others all zeros (the
missing-category state); ``blur`` takes the category prevailing in the smoothed
neighbourhood.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import Tensor

from geoclim.errors import ConfigError
from geoclim.explain.layout import FIELDS, InputLayout
from geoclim.explain.target import ExplainTarget, select_samples

BASELINES = ("climatology", "zeros", "blur")


def make_baseline(
    batch: dict[str, Tensor],
    kind: str,
    layout: InputLayout,
    normalizer: Any | None = None,
    sigma: float = 2.0,
    category_baseline: dict[str, str] | None = None,
) -> dict[str, Tensor]:
    """Baseline fields ``past``, ``known_future``, ``static`` (shapes of ``batch``).

    Args:
        batch: the explained batch.
        kind: one of :data:`BASELINES` (see the module docstring).
        layout: channel names (for ``"zeros"``).
        normalizer: the fitted normaliser (needed for ``"zeros"``).
        sigma: Gaussian width in steps (and cells) for ``"blur"``.
        category_baseline: ``{categorical variable: meaning}`` its one-hot takes in the
            ``climatology`` and ``zeros`` baselines (:func:`train_modes`: the most frequent
            train category); variables left out are all zeros (the missing state).

    """
    if kind not in BASELINES:
        raise ConfigError(f"unknown baseline {kind!r}; valid are {list(BASELINES)}")
    if kind == "blur":
        return _blur_baseline(batch, layout, sigma)
    out = _continuous_baseline(batch, kind, layout, normalizer)
    modes = layout.check_category_baseline(category_baseline)
    for f in FIELDS:
        idx = layout.baseline_channels(f, modes)
        if idx:
            out[f] = out[f].clone()
            if f == "static":
                out[f][:, idx] = 1.0
            else:
                out[f][:, :, idx] = 1.0
    return out


def _continuous_baseline(batch, kind, layout, normalizer) -> dict[str, Tensor]:
    if kind == "climatology":
        return {f: torch.zeros_like(batch[f]) for f in FIELDS}
    if kind == "zeros":
        if normalizer is None:
            raise ConfigError("baseline 'zeros' (physical zero) needs the fitted normaliser")
        out = {}
        for f in FIELDS:
            # one-hot channels (not in the normaliser's stats) get 0: the missing-category state
            names = [channel for channel, _ in layout.field_channels(f)]
            zero = [
                float(normalizer.encode(np.zeros(1, np.float32), n)[0])
                if n in normalizer.stats
                else 0.0
                for n in names
            ]
            shape = [1] * batch[f].dim()
            shape[2 if f != "static" else 1] = len(names)
            out[f] = torch.tensor(zero, dtype=batch[f].dtype).view(shape).expand_as(batch[f])
            out[f] = out[f].to(batch[f].device).contiguous()
        return out
    raise ConfigError(f"unknown baseline {kind!r}; valid are {list(BASELINES)}")


def _blur_baseline(batch, layout, sigma) -> dict[str, Tensor]:
    out = {}
    for f in FIELDS:
        x = batch[f].detach().cpu().numpy()
        spatial = sigma if x.shape[-1] > 1 or x.shape[-2] > 1 else 0.0
        s = (0, 0, spatial, spatial) if f == "static" else (0, sigma, 0, spatial, spatial)
        blurred = gaussian_filter(x, s, mode="nearest")
        _prevailing_category(blurred, layout, f)
        out[f] = torch.from_numpy(blurred).to(batch[f].device)
    return out


def _prevailing_category(blurred: np.ndarray, layout: InputLayout, field: str) -> None:
    """Blurred one-hot channels -> the one-hot of the prevailing category, in place.

    A blurred one-hot is a fractional mixture, no category at all; the blur baseline of a
    categorical input is instead the category that dominates the smoothed neighbourhood
    (ties: the first in ``flag_values`` order), or all zeros (missing) where none is seen.
    """
    axis = 1 if field == "static" else 2
    groups: dict[str, list[int]] = {}
    for c, (_, variable) in enumerate(layout.field_channels(field)):
        if variable in layout.categories:
            groups.setdefault(variable, []).append(c)
    for idx in groups.values():
        part = blurred.take(idx, axis=axis)  # (..., K, ...)
        best = np.expand_dims(part.argmax(axis), axis)
        hot = np.arange(len(idx)).reshape([-1] + [1] * (part.ndim - axis - 1)) == best
        hot &= part.sum(axis, keepdims=True) > 0
        index: list[Any] = [slice(None)] * blurred.ndim
        index[axis] = idx
        blurred[tuple(index)] = hot.astype(blurred.dtype)


def train_modes(dm: Any, max_samples: int = 2048, seed: int = 0) -> dict[str, str]:
    """The most frequent train category of each categorical input (``{variable: meaning}``).

    Counted on the one-hot channels of (a seeded sub-sample of) the train samples; the
    categorical analogue of the train mean, and the default ``category_baseline``.
    """
    layout = InputLayout.from_task(dm.task)
    if not layout.categories:
        return {}
    rows = select_samples(dm, "train", ExplainTarget(), max_samples, seed)
    batch = dm.dataset("train")[rows]
    counts: dict[str, np.ndarray] = {}
    for f in FIELDS:
        x = batch[f].detach().cpu().numpy()
        axis = 1 if f == "static" else 2
        if x.shape[axis] == 0:
            continue
        total = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1).sum(1)  # (C,)
        for variable in layout.categories:
            idx = [c for c, (_, v) in enumerate(layout.field_channels(f)) if v == variable]
            if idx:
                counts[variable] = counts.get(variable, 0) + total[idx]
    return {v: list(layout.categories[v])[int(np.argmax(n))] for v, n in counts.items()}
