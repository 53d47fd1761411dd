"""Masked forecast losses: MSE, MAE and quantile (pinball) loss.

Every loss takes the network's prediction, the target and ``target_mask`` and averages only
over the entries where the mask is 1, so missing or imputed targets (which the data path
fills with 0, the train mean in normalised space) never train the model. All losses work in
normalised space.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geoclim.data.quantiles import point_from_quantiles
from geoclim.errors import ConfigError

LOSSES = ("mse", "mae", "quantile")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask == 1`` (0 when nothing counts, keeping the graph)."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class ForecastLoss(nn.Module):
    """A masked loss over the batch layout.

    Args:
        name: ``"mse"``, ``"mae"`` or ``"quantile"`` (pinball loss averaged over quantiles).
        quantiles: the quantile levels, required for (and only for) ``"quantile"``.

    """

    def __init__(self, name: str = "mse", quantiles: tuple[float, ...] | list[float] = ()):
        super().__init__()
        if name not in LOSSES:
            raise ConfigError(f"unknown loss {name!r}; valid losses are {list(LOSSES)}")
        if (name == "quantile") != bool(quantiles):
            raise ConfigError(
                f"loss {name!r} with quantiles {list(quantiles)}: the quantile loss needs the "
                "task's quantiles and the point losses ('mse', 'mae') a task without them"
            )
        self.name = name
        self.register_buffer("quantiles", torch.tensor(list(quantiles), dtype=torch.float32))

    def forward(self, prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            prediction: ``(B, T_out, C_out, H, W)``, or ``(B, T_out, C_out, Q, H, W)`` for
                the quantile loss.
            target: ``(B, T_out, C_out, H, W)``.
            mask: ``(B, T_out, C_out, H, W)``, 1 where the target counts.

        Returns:
            Scalar loss.

        """
        if self.name == "quantile":
            q = self.quantiles.view(1, 1, 1, -1, 1, 1)  # (1, 1, 1, Q, 1, 1)
            error = target.unsqueeze(3) - prediction  # (B, T_out, C_out, Q, H, W)
            pinball = torch.maximum(q * error, (q - 1.0) * error).mean(dim=3)
            return _masked_mean(pinball, mask)
        error = prediction - target  # (B, T_out, C_out, H, W)
        values = error.square() if self.name == "mse" else error.abs()
        return _masked_mean(values, mask)


def point_forecast(prediction: Tensor, quantiles: tuple[float, ...] | list[float]) -> Tensor:
    """The point forecast of a prediction (:func:`geoclim.data.quantiles.point_from_quantiles`).

    Args:
        prediction: ``(B, T_out, C_out, H, W)`` or ``(B, T_out, C_out, Q, H, W)``.
        quantiles: the ``Q`` levels (empty for point predictions).

    Returns:
        ``(B, T_out, C_out, H, W)``: the median, interpolated between levels if needed.

    """
    if not quantiles:
        return prediction
    return point_from_quantiles(prediction, quantiles, axis=3)
