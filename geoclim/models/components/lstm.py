"""``LSTMNet``: an LSTM encoder-decoder point forecaster with a direct multi-horizon head.

Every cell (or station) is a sequence of its own: space is folded into the batch, so the
same network serves point batches (``H = W = 1``) and spatial patches or whole grids.

* static inputs set the encoder's initial hidden and cell states;
* the encoder reads the past inputs;
* the decoder (an LSTM continuing from the encoder state, or an MLP on the encoder's last
  state) reads the known-future inputs plus a learned lead embedding;
* a linear head maps each lead's decoder state to ``C_out`` values (times ``Q`` quantiles),
  all leads at once (no autoregression);
* optional context (:mod:`~geoclim.models.components.context`): a location embedding and the
  targets' recent lags / rolling means join the static inputs (initial state) and every
  lead's head input; per-location target scaling wraps the whole network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geoclim.errors import ConfigError
from geoclim.models.components.common import (
    PersistenceAnchor,
    fold_space,
    fold_static,
    output_head,
    split_outputs,
    unfold_space,
)
from geoclim.models.components.context import NetworkContext
from geoclim.types import Batch

DECODERS = ("lstm", "mlp")


class LSTMNet(nn.Module):
    """LSTM encoder-decoder over the batch layout.

    Args:
        c_past: past channels ``C_in``.
        c_known: known-future channels ``C_known``.
        c_static: static channels ``C_static``.
        c_out: target channels ``C_out``.
        horizon: ``T_out``.
        n_quantiles: ``Q`` (0 for a point forecast).
        hidden_size: LSTM state size ``D``.
        num_layers: stacked LSTM layers.
        decoder: ``"lstm"`` or ``"mlp"``.
        dropout: dropout between LSTM layers and before the head.
        anchor: how the forecast is anchored on the last observed targets: ``"gated"``
            (learned gate per lead and target, starts as persistence), ``"residual"`` or
            ``"none"`` (see :class:`~geoclim.models.components.common.PersistenceAnchor`).
        n_lat: location rows of the data (grid latitudes, or stations; from the datamodule).
        n_lon: location columns (1 for stations).
        location_embedding: size of a learned per-location embedding (0: none).
        recent_lags: lags of the targets fed to the head (0: the init time).
        recent_windows: lengths of the targets' rolling means fed to the head.
        location_norm: standardise the targets per location inside the network.
        input_steps: ``T_in`` (only used to drop recent lags / windows beyond the history).

    """

    def __init__(
        self,
        c_past: int,
        c_known: int,
        c_static: int,
        c_out: int,
        horizon: int,
        n_quantiles: int = 0,
        hidden_size: int = 64,
        num_layers: int = 1,
        decoder: str = "lstm",
        dropout: float = 0.0,
        anchor: str = "none",
        n_lat: int = 0,
        n_lon: int = 0,
        location_embedding: int = 0,
        recent_lags: tuple[int, ...] | list[int] = (),
        recent_windows: tuple[int, ...] | list[int] = (),
        location_norm: bool = False,
        input_steps: int | None = None,
    ):
        super().__init__()
        if decoder not in DECODERS:
            raise ConfigError(f"unknown LSTM decoder {decoder!r}; valid are {list(DECODERS)}")
        self.c_out, self.n_quantiles, self.horizon = c_out, n_quantiles, horizon
        self.hidden_size, self.num_layers, self.decoder_kind = hidden_size, num_layers, decoder
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
        c_context = self.context.features  # F: joins the static inputs and the head input
        self.static_to_state = (
            nn.Linear(c_static + c_context, 2 * num_layers * hidden_size)
            if c_static + c_context
            else None
        )
        lstm_dropout = dropout if num_layers > 1 else 0.0
        # time-major LSTMs (T, N, C), the layout of torch's kernels and of onnxruntime's LSTM
        # op: only the narrow inputs are transposed, never the (T, N, C_known + D) decoder
        # input or the (T, N, D) outputs (bitwise the same results as batch_first=True)
        self.encoder = nn.LSTM(c_past, hidden_size, num_layers, dropout=lstm_dropout)
        self.lead_embedding = nn.Parameter(torch.randn(horizon, hidden_size) * 0.1)
        self.decoder: nn.Module  # LSTM (decoder="lstm") or MLP over [last, known, lead]
        if decoder == "lstm":
            self.decoder = nn.LSTM(
                c_known + hidden_size,
                hidden_size,
                num_layers,
                dropout=lstm_dropout,
            )
        else:
            self.decoder = nn.Sequential(
                nn.Linear(hidden_size + c_known + hidden_size, hidden_size),
                nn.GELU(),
                nn.Linear(hidden_size, hidden_size),
                nn.GELU(),
            )
        self.dropout = nn.Dropout(dropout)
        self.head = output_head(hidden_size + c_context, c_out, n_quantiles)
        self.anchor = PersistenceAnchor(anchor, horizon, c_out)
        self.anchor.init_head(self.head)

    def _initial_state(self, x_static: Tensor) -> tuple[Tensor, Tensor] | None:
        """Static ``(N, C_static)`` -> encoder ``(h0, c0)``, each ``(layers, N, D)``."""
        if self.static_to_state is None:
            return None
        n = x_static.shape[0]
        state = torch.tanh(self.static_to_state(x_static))  # (N, 2 * layers * D)
        state = state.view(n, 2, self.num_layers, self.hidden_size).permute(1, 2, 0, 3)
        return state[0].contiguous(), state[1].contiguous()

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Forecast all leads.

        Args:
            batch: ``past (B, T_in, C_in, H, W)``, ``known_future (B, T_out, C_known, H, W)``,
                ``static (B, C_static, H, W)``.

        Returns:
            ``{"prediction": (B, T_out, C_out[, Q], H, W)}`` in normalised space.

        """
        past = self.context.encode(batch)  # (B, T_in, C_in, H, W), per-location scaled if asked
        b, _, _, h, w = past.shape
        x_past = fold_space(past).transpose(0, 1)  # (T_in, N, C_in), N = B * H * W
        x_known = fold_space(batch["known_future"]).transpose(0, 1)  # (T_out, N, C_known)
        x_static = fold_static(batch["static"])  # (N, C_static)
        n = x_past.shape[1]
        context = self.context(batch, past)  # (B, F, H, W) or None
        x_context = fold_static(context) if context is not None else None  # (N, F)
        if x_context is not None:
            x_static = torch.cat([x_static, x_context], dim=-1)  # (N, C_static + F)

        enc_out, (h_n, c_n) = self.encoder(x_past, self._initial_state(x_static))
        lead = self.lead_embedding[:, None].expand(-1, n, -1)  # (T_out, N, D)
        if self.decoder_kind == "lstm":
            dec_in = torch.cat([x_known, lead], dim=-1)  # (T_out, N, C_known + D)
            dec_out, _ = self.decoder(dec_in, (h_n, c_n))  # (T_out, N, D)
        else:
            last = enc_out[-1:].expand(self.horizon, -1, -1)  # (T_out, N, D)
            dec_out = self.decoder(torch.cat([last, x_known, lead], dim=-1))  # (T_out, N, D)

        dec_out = self.dropout(dec_out)
        if x_context is not None:
            ctx = x_context[None].expand(self.horizon, -1, -1)  # (T_out, N, F)
            dec_out = torch.cat([dec_out, ctx], dim=-1)  # (T_out, N, D + F)
        y = self.head(dec_out)  # (T_out, N, C_out * Q)
        y = split_outputs(y, self.c_out, self.n_quantiles)  # (T_out, N, C_out[, Q])
        prediction = unfold_space(y.transpose(0, 1), b, h, w)  # (B, T_out, C_out[, Q], H, W)
        prediction = self.anchor(prediction, past)  # (B, T_out, C_out[, Q], H, W)
        return {"prediction": self.context.decode(prediction, batch)}
