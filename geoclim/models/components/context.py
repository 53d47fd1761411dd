"""What the trees see and the networks did not: location, local scale, recent lags.

Three optional blocks shared by the networks (all off by default, each a ``model.net``
option):

* :class:`LocationEmbedding` (``location_embedding: E``): a learned vector per grid cell or
  station, looked up from the batch's integer positions (``lat_idx``, ``lon_idx`` are the
  sample's patch origin; a station sample has ``lat_idx`` = station position). Trees get
  the same information from their location features.
* :class:`RecentSummary` (``recent_lags: [l, ...]``, ``recent_windows: [w, ...]``): the
  targets at lags ``l`` and their means over the last ``w`` steps, the lag and rolling-mean
  features of the trees, handed straight to the network (LSTM: initial state and every
  lead's head input; CNN: input channels).
* :class:`LocationScaler` (``location_norm: true``): per-location standardisation of the
  targets. The datamodule's normaliser is fitted per variable over all locations; inside
  the network the targets of each location are re-standardised with that location's train
  mean and standard deviation (in the normaliser's space), and the forecast mapped back
  exactly (``z = mu_s + sigma_s * z_s``), so everything outside the network (assembly,
  export, serving) is unchanged. Statistics come from
  :func:`geoclim.data.normalize.location_stats` and travel in the state dict.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from geoclim.errors import ConfigError
from geoclim.types import Batch

log = logging.getLogger(__name__)


def location_ids(batch: Batch, h: int, w: int, n_lon: int) -> Tensor:
    """Flat location id ``row * n_lon + col`` of every cell of the samples, ``(B, H, W)``."""
    rows = batch["lat_idx"].long()[:, None] + torch.arange(h, device=batch["lat_idx"].device)
    cols = batch["lon_idx"].long()[:, None] + torch.arange(w, device=batch["lon_idx"].device)
    return rows[:, :, None] * n_lon + cols[:, None, :]  # (B, H, W)


class LocationEmbedding(nn.Module):
    """A learned ``dim``-vector per location of an ``n_lat x n_lon`` grid (stations: ``n x 1``).

    Args:
        n_lat: rows (grid latitudes, or stations).
        n_lon: columns (grid longitudes, 1 for stations).
        dim: embedding size ``E``.

    """

    def __init__(self, n_lat: int, n_lon: int, dim: int):
        super().__init__()
        if n_lat < 1 or n_lon < 1 or dim < 1:
            raise ConfigError(
                f"location embedding needs n_lat, n_lon, dim >= 1; got {n_lat}, {n_lon}, {dim}"
            )
        self.n_lon = n_lon
        self.table = nn.Embedding(n_lat * n_lon, dim)
        nn.init.normal_(self.table.weight, std=0.1)

    def forward(self, batch: Batch, h: int, w: int) -> Tensor:
        """``(B, E, H, W)``: the embedding of each cell of each sample."""
        ids = location_ids(batch, h, w, self.n_lon)  # (B, H, W)
        return self.table(ids).permute(0, 3, 1, 2)  # (B, E, H, W)


class RecentSummary(nn.Module):
    """The targets at the given lags and their means over the last ``windows`` steps.

    The networks' version of the trees' ``<var>_lag<l>`` and ``<var>_mean<w>`` features
    (:mod:`geoclim.baselines.features`): lag 0 is the init time (the last input step).

    Args:
        c_out: targets ``C_out`` (the first channels of ``past``).
        lags: lags in steps.
        windows: rolling-mean lengths in steps.
        input_steps: the history length ``T_in`` when known: lags ``>= T_in`` and windows
            ``> T_in`` are dropped (as the trees drop them, logged); otherwise a history
            too short for them is an error at the first batch.

    """

    def __init__(
        self,
        c_out: int,
        lags: tuple[int, ...] | list[int] = (),
        windows: tuple[int, ...] | list[int] = (),
        input_steps: int | None = None,
    ):
        super().__init__()
        self.lags, self.windows = tuple(int(x) for x in lags), tuple(int(x) for x in windows)
        if any(x < 0 for x in self.lags) or any(x < 1 for x in self.windows):
            raise ConfigError(
                f"recent_lags must be >= 0 and recent_windows >= 1; got {list(self.lags)}, "
                f"{list(self.windows)}"
            )
        if input_steps is not None:
            kept = tuple(x for x in self.lags if x < input_steps)
            kept_w = tuple(x for x in self.windows if x <= input_steps)
            if (kept, kept_w) != (self.lags, self.windows):
                log.warning(
                    "recent_lags %s / recent_windows %s: those beyond the %d input steps dropped",
                    list(self.lags),
                    list(self.windows),
                    input_steps,
                )
            self.lags, self.windows = kept, kept_w
        self.c_out = c_out
        self.features = c_out * (len(self.lags) + len(self.windows))

    def forward(self, past: Tensor) -> Tensor:
        """``past (B, T_in, C_in, H, W)`` -> ``(B, F, H, W)``, ``F = C_out * (lags + windows)``."""
        b, t_in, _, h, w = past.shape
        longest = max((*(x + 1 for x in self.lags), *self.windows), default=0)
        if longest > t_in:
            raise ConfigError(
                f"recent_lags / recent_windows reach {longest} steps back but the history "
                f"has {t_in} (task.input_steps)"
            )
        y = past[:, :, : self.c_out]  # (B, T_in, C_out, H, W)
        parts = [y[:, t_in - 1 - lag][:, None] for lag in self.lags]  # (B, 1, C_out, H, W) each
        parts += [y[:, t_in - n :].mean(1, keepdim=True) for n in self.windows]
        if not parts:
            return past.new_zeros(b, 0, h, w)
        return torch.cat(parts, dim=1).flatten(1, 2)  # (B, F, H, W)


class LocationScaler(nn.Module):
    """Per-location standardisation of the targets, exactly undone on the forecast.

    ``encode``: ``z_s = (z - mu[s]) / sigma[s]`` on the target channels of ``past``;
    ``decode``: ``z = mu[s] + sigma[s] * z_s`` on the prediction. Until
    :meth:`set_stats` is called it is the identity (``mu = 0``, ``sigma = 1``).

    Args:
        n_lat: rows (grid latitudes, or stations).
        n_lon: columns (1 for stations).
        c_out: targets ``C_out``.

    """

    mean: Tensor
    std: Tensor

    def __init__(self, n_lat: int, n_lon: int, c_out: int):
        super().__init__()
        self.n_lon, self.c_out = n_lon, c_out
        self.register_buffer("mean", torch.zeros(n_lat * n_lon, c_out))
        self.register_buffer("std", torch.ones(n_lat * n_lon, c_out))

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        """Statistics ``(n_lat * n_lon, C_out)`` in the normaliser's space (std > 0)."""
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ConfigError(
                f"location statistics are {tuple(mean.shape)} / {tuple(std.shape)}; the "
                f"network expects {tuple(self.mean.shape)} (locations x targets)"
            )
        if not bool((std > 0).all()):
            raise ConfigError("location standard deviations must be > 0")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def _at(self, batch: Batch, h: int, w: int) -> tuple[Tensor, Tensor]:
        ids = location_ids(batch, h, w, self.n_lon)  # (B, H, W)
        mean = self.mean[ids].permute(0, 3, 1, 2)[:, None]  # (B, 1, C_out, H, W)
        std = self.std[ids].permute(0, 3, 1, 2)[:, None]
        return mean, std

    def encode(self, batch: Batch) -> Tensor:
        """``past (B, T_in, C_in, H, W)`` with its target channels standardised per location.

        Returns a new tensor and leaves the batch alone (an export records the batch keys
        a network reads, so the batch must not be copied).
        """
        past = batch["past"]
        mean, std = self._at(batch, past.shape[-2], past.shape[-1])
        targets = (past[:, :, : self.c_out] - mean) / std  # (B, T_in, C_out, H, W)
        return torch.cat([targets, past[:, :, self.c_out :]], dim=2)

    def decode(self, prediction: Tensor, batch: Batch) -> Tensor:
        """``(B, T_out, C_out[, Q], H, W)`` per-location standardised -> normaliser space."""
        mean, std = self._at(batch, prediction.shape[-2], prediction.shape[-1])
        if prediction.dim() == 6:  # quantiles: the same scale for each
            mean, std = mean.unsqueeze(3), std.unsqueeze(3)
        return prediction * std + mean


class NetworkContext(nn.Module):
    """The optional context blocks of one network, from its ``model.net`` options.

    Args:
        c_out: targets ``C_out``.
        n_lat: location rows the batch positions index (grid latitudes, or stations);
            given by the datamodule.
        n_lon: location columns (1 for stations).
        location_embedding: embedding size ``E`` (0: none).
        recent_lags: lags of the targets fed to the network (0: the init time).
        recent_windows: rolling-mean lengths fed to the head.
        location_norm: standardise the targets per location inside the network.
        input_steps: history length ``T_in`` if fixed (see :class:`RecentSummary`).

    Attributes:
        features: channels ``F`` of :meth:`forward` (0 without embedding and summary).

    """

    def __init__(
        self,
        c_out: int,
        n_lat: int = 0,
        n_lon: int = 0,
        location_embedding: int = 0,
        recent_lags: tuple[int, ...] | list[int] = (),
        recent_windows: tuple[int, ...] | list[int] = (),
        location_norm: bool = False,
        input_steps: int | None = None,
    ):
        super().__init__()
        if (location_embedding or location_norm) and (n_lat < 1 or n_lon < 1):
            raise ConfigError(
                "location_embedding / location_norm need the number of locations (n_lat, "
                f"n_lon >= 1, given by the datamodule when training); got {n_lat} x {n_lon}"
            )
        self.embedding = (
            LocationEmbedding(n_lat, n_lon, location_embedding) if location_embedding else None
        )
        self.summary = (
            RecentSummary(c_out, recent_lags, recent_windows, input_steps)
            if recent_lags or recent_windows
            else None
        )
        self.scaler = LocationScaler(n_lat, n_lon, c_out) if location_norm else None
        self.features = int(location_embedding) + (self.summary.features if self.summary else 0)

    def encode(self, batch: Batch) -> Tensor:
        """The past the network reads, ``(B, T_in, C_in, H, W)`` (per-location scaled if asked)."""
        return self.scaler.encode(batch) if self.scaler is not None else batch["past"]

    def decode(self, prediction: Tensor, batch: Batch) -> Tensor:
        """The prediction in the normaliser's space (inverse of :meth:`encode`)."""
        return self.scaler.decode(prediction, batch) if self.scaler is not None else prediction

    def forward(self, batch: Batch, past: Tensor) -> Tensor | None:
        """``(B, F, H, W)`` context features, ``None`` when ``F = 0``.

        Args:
            batch: the batch (its positions ``lat_idx``, ``lon_idx``).
            past: the past the network reads (:meth:`encode`).

        """
        if not self.features:
            return None
        h, w = past.shape[-2:]
        parts = [self.summary(past)] if self.summary is not None else []
        if self.embedding is not None:
            parts.append(self.embedding(batch, h, w))
        return torch.cat(parts, dim=1)  # (B, F, H, W)
