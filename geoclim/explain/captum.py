"""Captum attributions of the bare network on one batch, on ``(input_variable, lag)``.

:func:`attribute_batch` is the engine; :func:`geoclim.explain.network.explain_network` runs it
over a split and assembles the ``xr.Dataset``.

Methods (``method=``):

* ``integrated_gradients`` -- path integral of gradients from a baseline to the input
  (Sundararajan et al. 2017). Completeness: the attributions of a sample sum to
  ``f(x) - f(baseline)``; the residual is kept as the ``delta`` variable.
* ``feature_ablation`` -- replace a group of inputs by the baseline, record the output drop.
  Groups (``ablation=``): ``"cell"`` (one ``(variable, lag)`` entry, over the whole patch),
  ``"variable"`` (a variable at every lag) or ``"lag"`` (every variable at one lag).
* ``occlusion`` -- for spatial models (CNN-spatial on whole grids): slide a ``block x block``
  window over the input grid, one variable at a time over all its steps; the map says which
  places drive the explained output (``(input_variable, latitude, longitude)``).
* ``gradient_shap`` -- SmoothGrad-style expected gradients over a set of reference inputs
  (Lundberg & Lee 2017), a second opinion on integrated gradients.

Baselines (``baseline=``: ``climatology``, ``zeros``, ``blur``) are built by
:mod:`geoclim.explain.baselines`; categorical inputs get a valid one-hot there.

The explained scalar is an :class:`~geoclim.explain.target.ExplainTarget`. Attributions are
reported in the target's physical units (normalised units times the train standard
deviation) unless the target is log-transformed, where they stay in normalised units
(``units`` attribute). Gradients through LSTMs on CUDA need cuDNN off in eval mode (cuDNN's
RNN backward only runs in training mode): it is switched off around every gradient call.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from geoclim.errors import ConfigError
from geoclim.explain.baselines import make_baseline
from geoclim.explain.layout import FIELDS, InputLayout
from geoclim.explain.target import ResolvedTarget

log = logging.getLogger(__name__)

METHODS = ("integrated_gradients", "feature_ablation", "occlusion", "gradient_shap")
ABLATIONS = ("cell", "variable", "lag")


def gradient_context(net: nn.Module, device: torch.device) -> contextlib.AbstractContextManager:
    """A context disabling cuDNN for recurrent nets on CUDA (its RNN backward needs train mode)."""
    if device.type == "cuda" and any(isinstance(m, nn.RNNBase) for m in net.modules()):
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


class ScalarForward(nn.Module):
    """The network as ``(past, known_future, static, *rest) -> (B, n_outputs)`` for Captum.

    The batch fields Captum does not attribute (positions, empty channels) travel as
    ``additional_forward_args`` (:attr:`rest`, in :attr:`rest_keys` order): Captum expands
    them exactly as it expands the inputs (tiled for integrated-gradient steps and
    ablation perturbations, interleaved for gradient-SHAP samples).

    Args:
        net: the bare network (``forward(batch)["prediction"]``).
        target: the resolved explained scalar.
        template: the explained batch.
        fields: the batch fields passed as Captum inputs, in order.
        cell_mask: ``(H, W)`` weights of the output cells aggregated.

    """

    def __init__(
        self,
        net: nn.Module,
        target: ResolvedTarget,
        template: dict[str, Tensor],
        fields: tuple[str, ...],
        cell_mask: Tensor | None = None,
    ):
        super().__init__()
        self.net, self.target, self.fields = net, target, fields
        self.rest_keys = tuple(k for k in template if k not in fields)
        self.rest = tuple(template[k] for k in self.rest_keys)
        self.cell_mask = cell_mask

    def forward(self, *args: Tensor) -> Tensor:
        """Scalars ``(B, n_outputs)`` of the batch with the inputs in place of its fields."""
        inputs = args[: len(self.fields)]
        batch = dict(zip(self.rest_keys, args[len(self.fields) :], strict=True))
        batch |= dict(zip(self.fields, inputs, strict=True))
        out = self.target.reduce(self.net(batch)["prediction"], self.cell_mask)
        # keep every input in the graph: a net that ignores one (no static fields used,
        # say) gets zero gradients there instead of an autograd error
        return out + sum(0.0 * x.sum() for x in inputs)


def _feature_mask(
    batch: dict[str, Tensor], fields: tuple[str, ...], layout: InputLayout, mode: str
) -> tuple[Tensor, ...]:
    """Captum feature masks grouping ``(variable, lag)`` cells, variables or lags."""
    names, lags = layout.variables, layout.lags
    v_col = {n: i for i, n in enumerate(names)}
    lag_pos = {int(lag): i for i, lag in enumerate(lags)}
    masks = []
    for f in fields:
        # the one-hot channels of a categorical variable share its group: ablated together
        channels = [variable for _, variable in layout.field_channels(f)]
        if f == "static":
            steps = [0]
        elif f == "past":
            steps = [layout.input_steps - 1 - i for i in range(layout.input_steps)]
        else:
            steps = [-(k + 1) for k in range(layout.horizon)]
        ids = np.empty((len(steps), len(channels)), np.int64)
        for i, lag in enumerate(steps):
            for c, name in enumerate(channels):
                if mode == "cell":
                    ids[i, c] = v_col[name] * lags.size + lag_pos[lag]
                elif mode == "variable":
                    ids[i, c] = v_col[name]
                else:
                    ids[i, c] = lag_pos[lag]
        mask = torch.from_numpy(ids).to(batch[f].device)
        mask = mask[0][None, :, None, None] if f == "static" else mask[None, :, :, None, None]
        masks.append(mask)
    return tuple(masks)


def attribute_batch(
    net: nn.Module,
    batch: dict[str, Tensor],
    method: str,
    target: ResolvedTarget,
    layout: InputLayout,
    *,
    baseline: str = "climatology",
    normalizer: Any | None = None,
    cell_mask: Tensor | None = None,
    sigma: float = 2.0,
    n_steps: int = 32,
    ablation: str = "cell",
    block: int = 2,
    stride: int | None = None,
    n_samples: int = 16,
    stdevs: float = 0.1,
    reference: dict[str, Tensor] | None = None,
    maps: bool = False,
    category_baseline: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """Attributions of one batch, on the ``(variable, lag)`` cube.

    Args:
        net: the bare network, eval mode.
        batch: a Batch (tensors on the network's device).
        method: one of :data:`METHODS`.
        target: the resolved explained scalar.
        layout: the task's input layout.
        baseline: one of :data:`BASELINES`.
        normalizer: the fitted normaliser (``"zeros"`` baseline).
        cell_mask: ``(H, W)`` output cells aggregated (spatial models).
        sigma: blur width (``"blur"`` baseline).
        n_steps: integration steps (integrated gradients).
        ablation: feature-ablation groups, one of :data:`ABLATIONS`.
        block: occlusion window edge in cells.
        stride: occlusion window step (default ``block``).
        n_samples: noisy samples per input (gradient SHAP).
        stdevs: noise standard deviation in normalised units (gradient SHAP).
        reference: reference batch whose fields are gradient SHAP's baselines (default:
            the ``baseline`` alone).
        maps: whole-grid (spatial) models: keep the input cells of integrated gradients
            and gradient SHAP (``(B, n_out, V, lag, H, W)``), a map of where the drivers
            lie; otherwise the attributions are summed over the input grid.
        category_baseline: ``{categorical variable: meaning}`` of the baseline's one-hot
            (see :func:`make_baseline`); ``None``: all zeros, the missing-category state.

    Returns:
        ``cube (B, n_out, V, lag[, H, W])`` (occlusion: ``(B, n_out, V, H, W)``, grouped
        ablation: ``(B, n_out, V)`` or ``(B, n_out, lag)``), ``prediction (B, n_out)``,
        ``baseline_prediction (B, n_out)``, for integrated gradients ``delta`` and, when the
        task has categorical inputs and the cube is ``(variable, lag)``-shaped,
        ``category_cube (B, n_out, K, lag[, H, W])``, the per-category breakdown.

    """
    import captum.attr as ca

    if method not in METHODS:
        raise ConfigError(f"unknown attribution method {method!r}; valid are {list(METHODS)}")
    if ablation not in ABLATIONS:
        raise ConfigError(f"unknown ablation grouping {ablation!r}; valid are {list(ABLATIONS)}")
    fields = tuple(f for f in FIELDS if batch[f].shape[2 if f != "static" else 1] > 0)
    forward = ScalarForward(net, target, batch, fields, cell_mask)
    base = make_baseline(batch, baseline, layout, normalizer, sigma, category_baseline)
    inputs = tuple(batch[f] for f in fields)
    base_in = tuple(base[f] for f in fields)
    spatial = batch["past"].shape[-1] * batch["past"].shape[-2] > 1
    if method == "occlusion" and not spatial:
        raise ConfigError(
            "occlusion maps spatial blocks: it needs a spatial model on grids (cnn); "
            "use feature_ablation for point models"
        )
    if maps and method not in ("integrated_gradients", "gradient_shap"):
        raise ConfigError(
            f"maps=True keeps the input cells of integrated_gradients and gradient_shap; "
            f"{method!r} has no per-cell form (use occlusion for perturbation maps)"
        )
    if maps and not spatial:
        raise ConfigError("maps=True needs a spatial model on whole grids (cnn)")
    device = batch["past"].device
    out: dict[str, list[np.ndarray]] = {"cube": [], "delta": [], "category_cube": []}
    with torch.no_grad():
        prediction = forward(*inputs, *forward.rest)  # (B, n_out)
        base_prediction = forward(*base_in, *forward.rest)
    for j in range(target.n_outputs):
        if method == "integrated_gradients":
            with gradient_context(net, device):
                attr, delta = ca.IntegratedGradients(forward).attribute(
                    inputs,
                    base_in,
                    target=j,
                    additional_forward_args=forward.rest,
                    n_steps=n_steps,
                    internal_batch_size=max(1, inputs[0].shape[0]) * 8,
                    return_convergence_delta=True,
                )
            out["delta"].append(delta.detach().cpu().numpy())
        elif method == "gradient_shap":
            refs = base_in if reference is None else tuple(reference[f] for f in fields)
            with gradient_context(net, device):
                attr = ca.GradientShap(forward).attribute(
                    inputs,
                    refs,
                    n_samples=n_samples,
                    stdevs=stdevs,
                    target=j,
                    additional_forward_args=forward.rest,
                )
        elif method == "feature_ablation":
            if j == 0:  # one pass per group gives every lead (see _ablate_all_outputs)
                every = _ablate_all_outputs(
                    ca, forward, inputs, base_in, batch, fields, layout, ablation
                )
            attr = tuple(a[:, j] for a in every)
        else:
            attr = _occlude(ca, forward, inputs, base_in, fields, batch, layout, j, block, stride)
        cube, categories = _cube(attr, fields, batch, layout, method, ablation, maps)
        out["cube"].append(cube)
        if categories is not None:
            out["category_cube"].append(categories)
    result = {
        "cube": np.stack(out["cube"], 1),
        "prediction": prediction.detach().cpu().numpy(),
        "baseline_prediction": base_prediction.detach().cpu().numpy(),
    }
    for key in ("delta", "category_cube"):
        if out[key]:
            result[key] = np.stack(out[key], 1)
    return result


def _ablate_all_outputs(ca, forward, inputs, base_in, batch, fields, layout, ablation):
    """Feature ablation of every output at once: ``(B, n_out, *field)`` per field.

    The forward is flattened to ``(B * n_out,)``; Captum then attributes each output
    element separately from one perturbed pass per group (an output ``(b, k)`` depends on
    sample ``b`` only, so this is the per-sample, per-lead ablation), instead of one pass
    per group and lead. Several groups share a pass (:func:`_per_eval`): Captum stacks
    their perturbed copies along the batch, so the flat output of ``k`` copies is ``k``
    consecutive ``(B * n_out,)`` blocks, one per group, as it reads them back.
    """
    n = inputs[0].shape[0]

    def flat(*args: Tensor) -> Tensor:
        return forward(*args).reshape(-1)  # (B * n_out,)

    with torch.no_grad():
        attr = ca.FeatureAblation(flat).attribute(
            inputs,
            base_in,
            additional_forward_args=forward.rest,
            feature_mask=_feature_mask(batch, fields, layout, ablation),
            perturbations_per_eval=_per_eval(inputs),
        )
    return tuple(a.reshape(n, -1, *a.shape[1:]) for a in attr)


def _occlude(ca, forward, inputs, base_in, fields, batch, layout, j, block, stride):
    if layout.categories:  # a window must cover all one-hot channels of a variable
        return _occlude_grouped(
            ca, forward, inputs, base_in, fields, batch, layout, j, block, stride
        )
    stride = stride or block
    windows, strides = [], []
    for f in fields:
        lead = () if f == "static" else (batch[f].shape[1],)
        windows.append((*lead, 1, block, block))
        strides.append((*lead, 1, stride, stride))
    with torch.no_grad():
        return ca.Occlusion(forward).attribute(
            inputs,
            sliding_window_shapes=tuple(windows),
            strides=tuple(strides),
            baselines=base_in,
            target=j,
            additional_forward_args=forward.rest,
            perturbations_per_eval=_per_eval(inputs),
        )


def _occlude_grouped(ca, forward, inputs, base_in, fields, batch, layout, j, block, stride):
    """Occlusion by tiles of a variable over all its steps and channels (one-hot together).

    Captum's sliding windows have one shape per input, so they cannot span the ``K``
    channels of a one-hot variable next to one-channel variables; non-overlapping
    ``block x block`` tiles (``stride == block``) are the same perturbations as a feature
    ablation with one group per (variable, tile).
    """
    if stride not in (None, block):
        raise ConfigError(
            f"occlusion of a task with categorical inputs uses non-overlapping tiles: "
            f"stride must equal block ({block}), got {stride}"
        )
    h, w = batch["past"].shape[-2:]
    rows, cols = np.arange(h)[:, None] // block, np.arange(w)[None, :] // block
    tile = rows * (-(-w // block)) + cols  # (H, W) tile id
    n_tiles = int(tile.max()) + 1
    v_col = {n: i for i, n in enumerate(layout.variables)}
    masks = []
    for f in fields:
        var = np.asarray([v_col[v] for _, v in layout.field_channels(f)])  # (C,)
        ids = var[:, None, None] * n_tiles + tile[None]  # (C, H, W)
        mask = torch.from_numpy(ids).to(batch[f].device)
        if f == "static":  # (1, C, H, W)
            masks.append(mask[None])
        else:  # (1, T, C, H, W): a tile spans every step
            masks.append(mask[None, None].expand(1, batch[f].shape[1], *ids.shape).contiguous())
    with torch.no_grad():
        return ca.FeatureAblation(forward).attribute(
            inputs,
            base_in,
            target=j,
            additional_forward_args=forward.rest,
            feature_mask=tuple(masks),
            perturbations_per_eval=_per_eval(inputs),
        )


def _cube(attr, fields, batch, layout, method, ablation, maps=False):
    """Captum's per-field attributions -> ``(B, V, lag[, H, W])`` (reduced for groups).

    Returns the cube and, when the layout has categorical inputs and the cube keeps the
    lag axis, the per-category cube ``(B, K, lag[, H, W])`` (else ``None``).
    """
    parts = dict(zip(fields, (a.detach().cpu().numpy() for a in attr), strict=True))
    for f in FIELDS:
        parts.setdefault(f, batch[f].new_zeros(batch[f].shape).cpu().numpy())
    perturbation = method in ("feature_ablation", "occlusion")
    keep_space = method == "occlusion" or maps
    if perturbation:  # every channel and cell of a group holds the group's value
        # a group's value counts for the category the sample has (the 1 of its one-hot)
        present = {f: batch[f].detach().cpu().numpy() for f in FIELDS}
    if not keep_space:  # point outputs or grid-wide groups: sum the patch's cells
        if method == "feature_ablation":
            h, w = batch["past"].shape[-2:]
            present = {f: v.mean((-2, -1)) for f, v in present.items()}
            parts = {f: v.sum((-2, -1)) / (h * w) for f, v in parts.items()}
        else:
            parts = {f: v.sum((-2, -1)) for f, v in parts.items()}
    fields3 = (parts["past"], parts["known_future"], parts["static"])
    space_ndim = 2 if keep_space else 0
    cube = layout.to_cube(*fields3, space_ndim=space_ndim, reduce="mean" if perturbation else "sum")
    categories = None
    if layout.categories and not (method == "occlusion" or ablation != "cell" and perturbation):
        weighted = fields3
        if perturbation:
            weighted = tuple(parts[f] * present[f] for f in FIELDS)
        categories = layout.to_category_cube(*weighted, space_ndim=space_ndim)
    with np.errstate(all="ignore"):
        if method == "occlusion":  # a window covers every step of a variable: one value each
            return np.nanmean(cube, axis=2), None
        if method == "feature_ablation" and ablation == "variable":
            return np.nanmean(cube, axis=2), None
        if method == "feature_ablation" and ablation == "lag":
            return np.nanmean(cube, axis=1), None
    return cube, categories


def _per_eval(inputs: tuple[Tensor, ...]) -> int:
    """Perturbed copies of the batch per forward pass (Captum's ``perturbations_per_eval``).

    At most 64 copies, 1024 samples and about 2^22 input values (16 MB of float32) per
    pass: a batch of 64 point samples gets 16 copies, a whole-grid CNN's batch of 16 grids
    (24 steps x 7 channels x 12 x 12 cells each) 10. Batching saves the fixed cost of a
    pass, which matters for small passes; larger passes ran slower for the LSTM and the
    TFT, and a pass of large grids gains nothing from company but memory
    (``experiments/bench_explain``). Batching the perturbations changes no attribution
    (each copy is scored against the same unperturbed forecast), only the number of passes.
    """
    batch = max(1, inputs[0].shape[0])
    per_copy = max(1, sum(x.numel() for x in inputs))
    return max(1, min(64, 1024 // batch, (1 << 22) // per_copy))
