"""SHAP TreeExplainer on the tree baselines, mapped back to ``(input_variable, lag)``.

Trees follow the direct strategy (:mod:`geoclim.baselines.trees`): every lead is predicted
from the init-time information, by one model per lead (``per_lead``) or one model for all
leads with a ``lead`` feature (``shared``). Each lead is explained on its own rows with
exact TreeSHAP (Lundberg et al. 2020) of the estimator that predicts it.

A tree's forecast is ``p(t) + s_k * g(features)`` (``p(t)`` the persistence offset when the
model learns residuals, ``s_k`` the lead's scale); SHAP explains ``g``:
``g = E[g] + sum_f phi_f``. So, in physical units,

    prediction = offset + expected_value + sum_f shap_values_f

with ``expected_value = s_k E[g]`` and ``shap_values = s_k phi`` (the additivity the tests
check). Feature columns map back to the cube of :mod:`geoclim.explain.layout`:
``<var>_lag<l>`` -> ``(var, l)``; ``<var>_mean<w>`` -> spread evenly over ``(var, 0..w-1)``;
``<var>_valid`` and calendar encodings -> ``(name, -k)``, the valid time of lead ``k``;
static fields, ``latitude`` / ``longitude`` and ``lead`` -> ``(name, 0)`` (kind "static").
Categorical (CF flag) inputs are one 0/1 column per category (``wd=N_lag0``): their SHAP
values are summed into the source variable (``wd``), and kept per category in
``category_attribution`` (``category`` = ``wd=N``...); additivity holds either way.
The raw :class:`shap.Explanation` of every ``(target, lead)`` is returned too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from geoclim.errors import ConfigError
from geoclim.explain.layout import FIELDS, InputLayout, attribution_dataset
from geoclim.explain.target import ExplainTarget, is_spatial, sample_coordinates, select_samples
from geoclim.types import LATITUDE, LEAD_TIME, LONGITUDE, TIME

log = logging.getLogger(__name__)


@dataclass
class TreeAttribution:
    """What :func:`explain_trees` returns.

    Attributes:
        dataset: attributions on ``(sample, lead_time, input_variable, lag)`` plus the raw
            ``shap_values (sample, lead_time, feature)``, ``expected_value (lead_time)``,
            ``offset (sample)`` and ``prediction (sample, lead_time)``, physical units.
        explanations: ``{(target, lead): shap.Explanation}`` in the estimator's own output
            units (before the lead scale), with the feature names.

    """

    dataset: xr.Dataset
    explanations: dict[tuple[str, int], Any] = field(default_factory=dict)


def tree_layout(task: Any, names: list[str]) -> InputLayout:
    """The cube layout of a tree's feature columns (calendar and coordinates included)."""
    calendar_names = [n for n in names if n not in _parsed_names(names)]
    known = tuple(dict.fromkeys((*task.future_inputs, *calendar_names)))
    extra = tuple(n for n in (LATITUDE, LONGITUDE, "lead") if n in names)
    return InputLayout(
        tuple(task.past_variables),
        known,
        (*task.static_inputs, *extra),
        int(task.input_steps),
        int(task.horizon),
        dict(task.categories),
    )


_PATTERN = re.compile(r"^(?P<var>.+)_(?P<kind>lag|mean)(?P<n>\d+)$")


def _parsed_names(names: list[str]) -> set[str]:
    """Feature names that are not calendar columns (lags, means, valid, static, coords)."""
    out = {n for n in names if _PATTERN.match(n) or n.endswith("_valid")}
    return out | {n for n in names if n in (LATITUDE, LONGITUDE, "lead")}


def feature_map(
    names: list[str], layout: InputLayout, lead: int, static: set[str], by: str = "variable"
) -> np.ndarray:
    """``(F, V, lag)`` weights putting feature columns on the cube at ``lead``.

    Args:
        names: the feature columns.
        layout: the tree layout (:func:`tree_layout`).
        lead: the explained lead (valid-time columns sit at ``lag = -lead``).
        static: the static channel names among the columns.
        by: ``"variable"``: rows are ``layout.variables``, a categorical input's one-hot
            columns (``wd=N_lag0``) all map to its variable (``wd``); ``"category"``: rows
            are ``layout.category_channels`` and only the one-hot columns map (``(F, K, lag)``).

    """
    to_variable = {ch: v for f in FIELDS for ch, v in layout.field_channels(f)}
    rows = layout.variables if by == "variable" else layout.category_channels
    row = {n: i for i, n in enumerate(rows)}

    def at(channel: str) -> int | None:
        return row.get(to_variable.get(channel, channel) if by == "variable" else channel)

    lag_pos = {int(v): i for i, v in enumerate(layout.lags)}
    out = np.zeros((len(names), len(rows), layout.lags.size), np.float32)
    for f, name in enumerate(names):
        m = _PATTERN.match(name)
        if m:
            r = at(m["var"])
            lags = [int(m["n"])] if m["kind"] == "lag" else list(range(int(m["n"])))
            if r is not None:  # a rolling mean spreads evenly over its window
                out[f, r, [lag_pos[lag] for lag in lags]] = 1.0 / len(lags)
        elif name.endswith("_valid"):
            r = at(name[: -len("_valid")])
            if r is not None:
                out[f, r, lag_pos[-lead]] = 1.0
        elif name in static or name in (LATITUDE, LONGITUDE, "lead"):
            r = at(name)
            if r is not None:
                out[f, r, lag_pos[0]] = 1.0
        elif by == "variable":  # calendar encodings at the valid time
            out[f, row[name], lag_pos[-lead]] = 1.0
    return out


def explain_trees(
    baseline: Any,
    dm: Any,
    *,
    split: str = "test",
    target: ExplainTarget | dict | None = None,
    max_samples: int | None = 256,
    seed: int = 0,
    progress: bool = True,
) -> TreeAttribution:
    """Exact TreeSHAP of a fitted tree baseline on (a sub-sample of) a split's samples.

    Args:
        baseline: a fitted :class:`~geoclim.baselines.trees.TreeBaseline`.
        dm: the set-up datamodule it was fitted on.
        split: ``train``, ``val`` or ``test``.
        target: the explained scalar (variable, leads, quantile, stations / region); trees
            explain each lead of a point, so ``per_lead`` must stay true.
        max_samples: at most this many samples (seeded draw); ``None``: all.
        seed: sub-sampling seed.
        progress: show a progress bar over leads.

    Returns:
        The :class:`TreeAttribution`.

    """
    import shap

    if baseline.features is None or not getattr(baseline, "estimators", None):
        raise ConfigError(f"{baseline.name} is not fitted; call fit(dm) first")
    if is_spatial(dm):
        raise ConfigError("tree explanations need point samples (window.patch: 1)")
    spec = ExplainTarget.from_config(target)
    if not spec.per_lead:
        raise ConfigError("tree explanations are per lead: set target.per_lead: true")
    task_view = SimpleNamespace(
        targets=dm.task.targets, horizon=dm.task.horizon, quantiles=baseline.quantiles
    )
    resolved = spec.resolve(task_view)
    c = resolved.channel
    rows = select_samples(dm, split, spec, max_samples, seed)
    t, y, x = dm.index[split].decode(rows)
    names = list(baseline.features.names)
    layout = tree_layout(dm.task, names)
    models = baseline.estimators  # {(target, lead or None): [estimator per level]}
    offset_all = baseline._offset(dm)
    offset = np.zeros(t.size, np.float32) if offset_all is None else offset_all[t, y, x, c]
    n, n_leads = t.size, len(resolved.leads)
    cube = np.zeros((n, n_leads, len(layout.variables), layout.lags.size), np.float32)
    values = np.zeros((n, n_leads, len(names)), np.float32)
    feature_values = np.zeros_like(values)
    expected = np.zeros(n_leads, np.float32)
    k = len(layout.category_channels)
    categories = np.zeros((n, n_leads, k, layout.lags.size), np.float32) if k else None
    explanations = {}
    for j, lead in enumerate(tqdm(resolved.leads, desc="tree shap", disable=not progress)):
        est = _estimator(models, c, lead, resolved.q_index)
        feats = baseline.features.build(t, y, x, np.full(n, lead))
        feature_values[:, j] = feats
        ex = shap.TreeExplainer(est)(feats)
        ex.feature_names = names
        phi, base = ex.values, np.asarray(ex.base_values)
        if phi.ndim == 3:  # one model for several quantiles: pick the level
            phi, base = phi[..., resolved.q_index or 0], base[..., resolved.q_index or 0]
        explanations[(resolved.variable, lead)] = ex
        scale = float(baseline.lead_scale[c, lead - 1])
        values[:, j] = phi * scale
        expected[j] = float(np.ravel(base)[0]) * scale
        static = set(dm.task.static_channels)
        fmap = feature_map(names, layout, lead, static)
        cube[:, j] = np.einsum("nf,fvl->nvl", values[:, j], fmap)
        cube[:, j, fmap.sum(0) == 0] = np.nan  # no feature reads that (variable, lag)
        if categories is not None:  # the one-hot columns alone, per category
            cmap = feature_map(names, layout, lead, static, by="category")
            categories[:, j] = np.einsum("nf,fkl->nkl", values[:, j], cmap)
            categories[:, j, cmap.sum(0) == 0] = np.nan
    arrays = (cube, values, feature_values, expected, offset, categories)
    return TreeAttribution(
        _dataset(dm, baseline, (t, y, x), arrays, resolved, layout, names), explanations
    )


def _estimator(models: dict, c: int, lead: int, q_index: int | None) -> Any:
    ests = models.get((c, None)) or models.get((c, lead))
    if ests is None:
        raise ConfigError(f"no fitted estimator for target {c} lead {lead}")
    return ests[q_index or 0] if len(ests) > 1 else ests[0]


def _dataset(dm, baseline, positions, arrays, resolved, layout, names):
    t, y, x = positions
    cube, values, feature_values, expected, offset, categories = arrays
    from geoclim.data import variables

    ds = dm.ds
    times = ds[TIME].values
    sample_coords = sample_coordinates(ds, t, y, x)
    lead_time = (np.asarray(resolved.leads) * (times[1] - times[0])).astype("timedelta64[ns]")
    prediction = offset[:, None] + expected[None, :] + values.sum(-1)
    units = variables.get(resolved.variable).units
    out = attribution_dataset(
        cube,
        layout,
        lead_time,
        sample_coords=sample_coords,
        extra={
            "shap_values": (("sample", LEAD_TIME, "feature"), values),
            "feature_values": (("sample", LEAD_TIME, "feature"), feature_values),
            "expected_value": ((LEAD_TIME,), expected),
            "offset": (("sample",), offset),
            "prediction": (("sample", LEAD_TIME), prediction.astype(np.float32)),
        },
        attrs={
            "method": "tree_shap",
            "model": baseline.name,
            "strategy": baseline.strategy,
            "units": units,
            **resolved.describe(),
        },
        category_cube=categories,
    )
    out = out.assign_coords(feature=names)
    out["offset"].attrs["long_name"] = "persistence offset p(t) (0 unless residual)"
    out["expected_value"].attrs["long_name"] = "lead scale x E[g] over the trees' data"
    return out
