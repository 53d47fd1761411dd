"""Perturbation engines of the ONNX-side explanations (numpy over the ORT graph, no torch).

Each takes the forecaster (``run(batch) -> output``) and a request batch in the Batch
layout, and returns attributions on the cube of :mod:`geoclim.explain.layout`; see
:mod:`geoclim.serving.explain` for the methods, the baseline and the units.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geoclim.errors import ConfigError
from geoclim.explain.layout import FIELDS, InputLayout

Forecaster = Any  # geoclim.serving.adapter.Forecaster (not imported: no import circle)


def reduce_output(out: np.ndarray, channel: int, q: int | None) -> np.ndarray:
    """``(N, L, C[, Q], h, w)`` graph output -> ``(N, L)`` mean over the output cells."""
    p = out[:, :, channel]
    if q is not None:
        p = p[:, :, q]
    return p.mean((-2, -1))


def _groups(layout: InputLayout) -> list[tuple[str, list[int], int | None]]:
    """``(field, channels, step)``: one group per ``(variable, lag)`` entry.

    The one-hot channels of a categorical variable form one group: ablating it sets the
    whole one-hot to the baseline (all zeros, the missing-category state), never a
    fractional mixture of categories.
    """
    groups: list[tuple[str, list[int], int | None]] = []
    steps = {"past": layout.input_steps, "known_future": layout.horizon}
    for field in FIELDS:
        by_variable: dict[str, list[int]] = {}
        for c, (_, variable) in enumerate(layout.field_channels(field)):
            by_variable.setdefault(variable, []).append(c)
        for idx in by_variable.values():
            if field == "static":
                groups.append((field, idx, None))
            else:
                groups += [(field, idx, i) for i in range(steps[field])]
    return groups


def baseline_batch(
    layout: InputLayout, batch: dict[str, np.ndarray], modes: dict[str, str] | None = None
) -> dict[str, np.ndarray]:
    """The baseline fields: 0 (the train mean) everywhere, one-hot ``modes`` categories.

    Args:
        layout: the task's layout.
        batch: the request batch (shapes).
        modes: ``{categorical variable: meaning}`` its baseline one-hot takes (a valid
            category, e.g. the most frequent one in training); variables left out are all
            zeros, the missing-category state the adapter also feeds for a missing code.

    """
    modes = layout.check_category_baseline(modes)
    out = {f: np.zeros_like(batch[f]) for f in FIELDS}
    for f in FIELDS:
        idx = layout.baseline_channels(f, modes)
        if idx and f == "static":
            out[f][:, idx] = 1.0
        elif idx:
            out[f][:, :, idx] = 1.0
    return out


def _present(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch fields averaged over the patch cells: ``(N, T, C)`` / ``(N, C)``.

    On one-hot channels: the share of the patch in each category, which a group's
    ablation value is credited to in the per-category breakdown.
    """
    return {f: batch[f].mean((-2, -1)) for f in FIELDS}


def _categories(layout: InputLayout, fields: dict[str, np.ndarray], batch) -> np.ndarray | None:
    """``(N, L, K, lag)`` breakdown of the group values ``fields`` (``(N, L, T, C)``...)."""
    if not layout.categories:
        return None
    present = _present(batch)
    n, n_leads = fields["past"].shape[:2]
    weighted = {f: _fold(fields[f] * present[f][:, None]) for f in FIELDS}
    cube = layout.to_category_cube(weighted["past"], weighted["known_future"], weighted["static"])
    return cube.reshape(n, n_leads, *cube.shape[1:])


def ablation(
    forecaster: Forecaster,
    batch: dict[str, np.ndarray],
    channel: int,
    q: int | None,
    category_baseline: dict[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-entry ablation of a request batch (each group set to :func:`baseline_batch`).

    Returns:
        ``cube (N, L, V, lag)`` (normalised or physical output units), ``prediction (N, L)``,
        ``baseline_prediction (N, L)`` (every input at the baseline) and, for tasks with
        categorical inputs, ``(N, L, K, lag)``: each group's value on the category present.

    """
    layout = InputLayout.from_task(forecaster.task)
    ref = baseline_batch(layout, batch, category_baseline)
    base = reduce_output(forecaster.run(batch), channel, q)  # (N, L)
    fields = {f: np.zeros((*base.shape, *batch[f].shape[1:-2])) for f in FIELDS}
    for field, idx, i in _groups(layout):
        perturbed = dict(batch)
        v = batch[field].copy()
        if i is None:
            v[:, idx] = ref[field][:, idx]
        else:
            v[:, i, idx] = ref[field][:, i, idx]
        perturbed[field] = v
        drop = base - reduce_output(forecaster.run(perturbed), channel, q)  # (N, L)
        if i is None:
            fields[field][:, :, idx] = drop[..., None]
        else:
            fields[field][:, :, i, idx] = drop[..., None]
    baseline = reduce_output(forecaster.run({**batch, **ref}), channel, q)
    # fields are (N, L, T, C) / (N, L, C): fold the lead into the sample axis for to_cube
    n, n_leads = base.shape
    cube = layout.to_cube(
        _fold(fields["past"]),
        _fold(fields["known_future"]),
        _fold(fields["static"]),
        reduce="mean",  # every channel of a one-hot group holds the group's value
    )
    cats = _categories(layout, fields, batch)
    return cube.reshape(n, n_leads, *cube.shape[1:]), base, baseline, cats


def _fold(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def occlusion(
    forecaster: Forecaster,
    batch: dict[str, np.ndarray],
    channel: int,
    q: int | None,
    block: int = 2,
    category_baseline: dict[str, str] | None = None,
) -> np.ndarray:
    """Block occlusion of every variable (all its steps and channels) on grid samples.

    Returns:
        ``(N, L, V, H, W)``: drop of the domain-mean forecast when the block holding each
        cell is set to the baseline (each cell belongs to exactly one block).

    """
    layout = InputLayout.from_task(forecaster.task)
    ref = baseline_batch(layout, batch, category_baseline)
    base = reduce_output(forecaster.run(batch), channel, q)  # (N, L)
    h, w = batch["past"].shape[-2:]
    names = layout.variables
    out = np.zeros((*base.shape, len(names), h, w), np.float32)
    channels = {  # {field: {variable: its channels (every one-hot channel)}}
        f: {n: [c for c, (_, v) in enumerate(layout.field_channels(f)) if v == n] for n in names}
        for f in FIELDS
    }
    for r0 in range(0, h, block):
        for c0 in range(0, w, block):
            window = (slice(r0, r0 + block), slice(c0, c0 + block))
            for v, name in enumerate(names):
                perturbed = dict(batch)
                for field in FIELDS:
                    idx = channels[field][name]
                    if idx:
                        a = batch[field].copy()
                        r = ref[field]
                        if field == "static":
                            a[:, idx, window[0], window[1]] = r[:, idx, window[0], window[1]]
                        else:
                            a[:, :, idx, window[0], window[1]] = r[:, :, idx, window[0], window[1]]
                        perturbed[field] = a
                drop = base - reduce_output(forecaster.run(perturbed), channel, q)
                out[:, :, v, window[0], window[1]] = drop[:, :, None, None]
    return out


def shap_values(
    forecaster: Forecaster,
    batch: dict[str, np.ndarray],
    channel: int,
    q: int | None,
    max_evals: int | None = None,
    seed: int = 0,
    category_baseline: dict[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """SHAP permutation values of each ``(variable, lag)`` entry of point samples.

    The players are the ablation groups (:func:`_groups`): a one-hot variable at one step
    is one player, present (the sample's category) or absent (the baseline, all zeros).

    Returns:
        ``(N, L, V, lag)`` Shapley values against the baseline (a zero background) and, for
        categorical inputs, ``(N, L, K, lag)`` (each player's value on the category present).

    """
    import shap

    layout = InputLayout.from_task(forecaster.task)
    if batch["past"].shape[-1] * batch["past"].shape[-2] != 1:
        raise ConfigError("method 'shap' explains point models; use ablation or occlusion")
    n = batch["past"].shape[0]
    shapes = {f: batch[f].shape[1:-2] for f in FIELDS}
    sizes = [int(np.prod(shapes[f])) for f in FIELDS]
    flat = np.concatenate([batch[f].reshape(n, -1) for f in FIELDS], 1)  # (N, F)
    ref = baseline_batch(layout, batch, category_baseline)
    ref_flat = np.concatenate([ref[f].reshape(n, -1) for f in FIELDS], 1)  # (N, F)
    player = _players(layout, shapes)  # (F,) player of each flat input
    n_players = int(player.max()) + 1
    rest = {k: v for k, v in batch.items() if k not in FIELDS}

    def model(z: np.ndarray, row: int) -> np.ndarray:
        m = z.shape[0]  # z (m, P) in {0, 1}: player present or at the (zero) baseline
        b = ref_flat[row][None]
        x = (b + z[:, player] * (flat[row][None] - b)).astype(np.float32)  # (m, F)
        parts = np.split(x, np.cumsum(sizes)[:-1], axis=1)
        feed = {f: p.reshape(m, *shapes[f], 1, 1) for f, p in zip(FIELDS, parts, strict=True)}
        feed |= {k: np.repeat(v[row : row + 1], m, 0) for k, v in rest.items()}
        return reduce_output(forecaster.run(feed), channel, q)  # (m, L)

    masker = shap.maskers.Independent(np.zeros((1, n_players), np.float32))
    budget = max_evals or 2 * n_players + 1
    values = np.empty((n, forecaster.task.horizon, n_players), np.float32)
    ones = np.ones((1, n_players), np.float32)
    for i in range(n):
        explainer = shap.PermutationExplainer(lambda z, i=i: model(z, i), masker, seed=seed + i)
        values[i] = explainer(ones, max_evals=budget, silent=True).values[0].T
    per_input = values[..., player]  # (N, L, F): every input of a player holds its value
    parts = np.split(per_input, np.cumsum(sizes)[:-1], axis=2)
    fields = {f: p.reshape(n, p.shape[1], *shapes[f]) for f, p in zip(FIELDS, parts, strict=True)}
    cube = layout.to_cube(
        _fold(fields["past"]), _fold(fields["known_future"]), _fold(fields["static"]), reduce="mean"
    )
    point = {f: batch[f].reshape(n, *shapes[f], 1, 1) for f in FIELDS}
    return cube.reshape(n, values.shape[1], *cube.shape[1:]), _categories(layout, fields, point)


def _players(layout: InputLayout, shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """Player id of each flattened input (``past``, ``known_future``, ``static`` order)."""
    ids = {f: np.zeros(shapes[f], np.int64) for f in FIELDS}
    for p, (field, idx, i) in enumerate(_groups(layout)):
        if i is None:
            ids[field][idx] = p
        else:
            ids[field][i, idx] = p
    return np.concatenate([ids[f].ravel() for f in FIELDS])
