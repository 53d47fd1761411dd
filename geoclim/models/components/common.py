"""Shape helpers shared by the networks: folding space into the batch and back.

Point models (LSTM, TFT) run on every cell independently: ``(B, T, C, H, W)`` is folded to
``(B * H * W, T, C)``, so a point model handles point batches (``H = W = 1``) and spatial
batches (patches or whole grids) alike.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geoclim.errors import ConfigError


def fold_space(x: Tensor) -> Tensor:
    """``(B, T, C, H, W)`` -> ``(B * H * W, T, C)``."""
    b, t, c, h, w = x.shape
    return x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)


def fold_static(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B * H * W, C)``."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b * h * w, c)


def unfold_space(x: Tensor, b: int, h: int, w: int) -> Tensor:
    """``(B * H * W, T, *F)`` -> ``(B, T, *F, H, W)`` (inverse of :func:`fold_space`)."""
    feature_dims = x.shape[2:]
    x = x.reshape(b, h, w, x.shape[1], *feature_dims)  # (B, H, W, T, *F)
    order = (0, 3, *range(4, 4 + len(feature_dims)), 1, 2)
    return x.permute(*order)


def unfold_static(x: Tensor, b: int, h: int, w: int) -> Tensor:
    """``(B * H * W, C)`` -> ``(B, C, H, W)`` (inverse of :func:`fold_static`)."""
    return x.reshape(b, h, w, x.shape[-1]).permute(0, 3, 1, 2)


def output_head(hidden: int, c_out: int, n_quantiles: int) -> nn.Linear:
    """Linear map from ``hidden`` features to ``C_out * max(Q, 1)`` outputs."""
    return nn.Linear(hidden, c_out * max(n_quantiles, 1))


def split_outputs(y: Tensor, c_out: int, n_quantiles: int) -> Tensor:
    """``(N, T, C_out * Q)`` -> ``(N, T, C_out[, Q])`` (no quantile dim when ``Q == 0``)."""
    n, t, _ = y.shape
    return y.reshape(n, t, c_out, n_quantiles) if n_quantiles else y.reshape(n, t, c_out)


ANCHORS = ("gated", "residual", "none")
"""How a network is anchored on the last observation (see :class:`PersistenceAnchor`)."""


class PersistenceAnchor(nn.Module):
    """Anchor a forecast on the last observed targets, with a learned gate per lead and target.

    ``prediction[k, c] = gate[k, c] * last[c] + scale[k, c] * correction[k, c]`` in normalised
    space, where ``last`` is the target's value at the init time (the last input step) and
    ``correction`` is the network's output. With ``mode="gated"`` gate and scale start at 1
    and the network's output head starts at zero (:meth:`init_head`), so an untrained network
    forecasts persistence exactly; training then moves each lead's gate towards the weight
    the last observation deserves there (near 1 at short leads, lower as the forecast
    decorrelates from it) and each lead's scale towards the weight the network's correction
    deserves (networks share one head across leads, so without it a correction that helps
    long leads would be forced on the first ones). ``mode="residual"`` fixes the gate at 1 (the
    plain residual on the last observation, which pins long leads to it); ``mode="none"``
    leaves the network's output as it is.

    Args:
        mode: one of :data:`ANCHORS`.
        horizon: lead steps ``T_out``.
        c_out: targets ``C_out``.

    """

    def __init__(self, mode: str, horizon: int, c_out: int):
        super().__init__()
        if mode not in ANCHORS:
            raise ConfigError(f"unknown anchor {mode!r}; valid are {list(ANCHORS)}")
        self.mode, self.c_out = mode, c_out
        gated = mode == "gated"
        self.gate = nn.Parameter(torch.ones(horizon, c_out)) if gated else None
        self.scale = nn.Parameter(torch.ones(horizon, c_out)) if gated else None

    def init_head(self, head: nn.Module) -> None:
        """Zero the output head's weights and bias so the untrained forecast is persistence."""
        if self.mode != "gated":
            return
        for param in head.parameters():
            nn.init.zeros_(param)

    def forward(self, correction: Tensor, past: Tensor) -> Tensor:
        """Anchored prediction.

        Args:
            correction: network output ``(B, T_out, C_out[, Q], H, W)``.
            past: ``(B, T_in, C_in, H, W)`` with the targets as its first ``C_out`` channels.

        Returns:
            The prediction, shaped like ``correction``.

        """
        if self.mode == "none":
            return correction
        last = past[:, -1:, : self.c_out]  # (B, 1, C_out, H, W)
        quantiles = correction.dim() == 6
        if self.gate is not None and self.scale is not None:
            last = last * self.gate[None, :, :, None, None]  # (B, T_out, C_out, H, W)
            scale = self.scale[None, :, :, None, None]  # (1, T_out, C_out, 1, 1)
            correction = correction * (scale.unsqueeze(3) if quantiles else scale)
        if quantiles:
            last = last.unsqueeze(3)  # (B, T_out, C_out, 1, H, W): same for every quantile
        return correction + last
