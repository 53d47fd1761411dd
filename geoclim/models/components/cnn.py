"""``UNetNet``: a residual U-Net forecasting every lead frame of a grid at once.

Past frames, known-future frames and static fields are stacked as channels::

    x = [past (T_in * C_in) | known_future (T_out * C_known) | static (C_static)]  # (B, C, H, W)

The grid is padded (edge replication) to a multiple of ``2 ** depth`` so any size works
(7 x 5, 13 x 11, a 1 x 1 point), run through the U-Net and cropped back. The network sees
whole grids or patches alike; missing targets are masked in the loss by the module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoclim.models.components.common import PersistenceAnchor
from geoclim.models.components.context import NetworkContext
from geoclim.types import Batch


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (batch-size independent, unlike BatchNorm)."""
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection: ``(B, C_in, H, W) -> (B, C, H, W)``."""

    def __init__(self, c_in: int, c: int, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c, 3, padding=1),
            _norm(c),
            nn.SiLU(),
            nn.Dropout2d(dropout),
            nn.Conv2d(c, c, 3, padding=1),
            _norm(c),
        )
        self.skip = nn.Conv2d(c_in, c, 1) if c_in != c else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        return F.silu(self.body(x) + self.skip(x))


class UNetNet(nn.Module):
    """Residual U-Net over stacked frames, all leads at once.

    Args:
        c_past: past channels ``C_in``.
        c_known: known-future channels ``C_known``.
        c_static: static channels ``C_static``.
        c_out: target channels ``C_out``.
        input_steps: ``T_in``.
        horizon: ``T_out``.
        n_quantiles: ``Q`` (0 for a point forecast).
        base_channels: channels at full resolution; doubled at each level.
        depth: number of down-sampling levels (grids are padded to a multiple of
            ``2 ** depth``).
        dropout: spatial dropout inside the residual blocks.
        anchor: how the forecast is anchored on the last observed targets: ``"gated"``
            (learned gate per lead and target, starts as persistence), ``"residual"`` or
            ``"none"`` (see :class:`~geoclim.models.components.common.PersistenceAnchor`).
        n_lat: location rows of the data (grid latitudes; from the datamodule).
        n_lon: location columns.
        location_embedding: channels of a learned per-cell embedding map (0: none).
        recent_lags: lags of the targets as extra input channels (0: the init time).
        recent_windows: lengths of the targets' rolling means as extra input channels.
        location_norm: standardise the targets per cell inside the network.

    """

    def __init__(
        self,
        c_past: int,
        c_known: int,
        c_static: int,
        c_out: int,
        input_steps: int,
        horizon: int,
        n_quantiles: int = 0,
        base_channels: int = 32,
        depth: int = 2,
        dropout: float = 0.0,
        anchor: str = "none",
        n_lat: int = 0,
        n_lon: int = 0,
        location_embedding: int = 0,
        recent_lags: tuple[int, ...] | list[int] = (),
        recent_windows: tuple[int, ...] | list[int] = (),
        location_norm: bool = False,
    ):
        super().__init__()
        self.c_out, self.n_quantiles, self.horizon = c_out, n_quantiles, horizon
        self.depth = depth
        # zero channels appended to the stacked input x: 0 here; an export form sets it and
        # widens the stem with zero weights (geoclim.export.forms), so the result is the same
        self.input_padding = 0
        self.context = NetworkContext(
            c_out,
            n_lat,
            n_lon,
            location_embedding,
            recent_lags,
            recent_windows,
            location_norm,
            input_steps,
        )
        c_in = input_steps * c_past + horizon * c_known + c_static + self.context.features
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.stem = ResBlock(c_in, widths[0], dropout)
        self.down = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1),
                ResBlock(widths[i + 1], widths[i + 1], dropout),
            )
            for i in range(depth)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)
        )
        self.merge = nn.ModuleList(
            ResBlock(2 * widths[i], widths[i], dropout) for i in range(depth)
        )
        self.head = nn.Conv2d(widths[0], horizon * c_out * max(n_quantiles, 1), 1)
        self.anchor = PersistenceAnchor(anchor, horizon, c_out)
        self.anchor.init_head(self.head)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Forecast all lead frames.

        Args:
            batch: ``past (B, T_in, C_in, H, W)``, ``known_future (B, T_out, C_known, H, W)``,
                ``static (B, C_static, H, W)``.

        Returns:
            ``{"prediction": (B, T_out, C_out[, Q], H, W)}`` in normalised space.

        """
        past = self.context.encode(batch)  # (B, T_in, C_in, H, W), per-cell scaled if asked
        b, _, _, h, w = past.shape
        context = self.context(batch, past)  # (B, F, H, W) or None
        x = torch.cat(
            [
                past.flatten(1, 2),
                batch["known_future"].flatten(1, 2),
                batch["static"],
                *([context] if context is not None else []),
                *([past.new_zeros(b, self.input_padding, h, w)] if self.input_padding else []),
            ],
            dim=1,
        )  # (B, C, H, W)
        mult = 2**self.depth
        pad_h, pad_w = (-h) % mult, (-w) % mult
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")  # (B, C, H', W')

        skips = []
        x = self.stem(x)  # (B, C0, H', W')
        for down in self.down:
            skips.append(x)
            x = down(x)  # (B, C_{i+1}, H' / 2^(i+1), W' / 2^(i+1))
        for i in reversed(range(self.depth)):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))  # (B, C_i, ...)
        y = self.head(x)[..., :h, :w]  # (B, T_out * C_out * Q, H, W)

        shape = (b, self.horizon, self.c_out, *((self.n_quantiles,) if self.n_quantiles else ()))
        prediction = y.reshape(*shape, h, w)  # (B, T_out, C_out[, Q], H, W)
        prediction = self.anchor(prediction, past)  # (B, T_out, C_out[, Q], H, W)
        return {"prediction": self.context.decode(prediction, batch)}
