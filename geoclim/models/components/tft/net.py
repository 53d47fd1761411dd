"""``TemporalFusionTransformer``: the TFT of Lim et al. (2021) over the batch layout.

``forward`` follows the paper's figure 2 from bottom to top. Every cell (or station) is a
sequence of its own: space is folded into the batch. Windows have a fixed length, so the
LSTMs run without packing and the decoder mask is a constant buffer, which keeps the network
ONNX-exportable. As in the paper (and pytorch-forecasting), the known inputs (calendar
encodings, forecast forcing) enter the encoder too: the encoder selects among the past and
the known inputs at the input steps (``known_past``), the decoder among the known inputs
over the horizon (``known_future``).

The returned dict carries, besides the prediction, the static, encoder and decoder
variable-selection weights and, in eval mode (or with ``need_weights`` set), the attention
weights (no hooks needed to interpret it); training does not return them.
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
    unfold_static,
)
from geoclim.models.components.tft.attention import InterpretableMultiHeadAttention, causal_mask
from geoclim.models.components.tft.blocks import GateAddNorm, GatedResidualNetwork
from geoclim.models.components.tft.selection import VariableSelectionNetwork
from geoclim.types import Batch


class TemporalFusionTransformer(nn.Module):
    """Temporal Fusion Transformer with quantile outputs.

    Args:
        c_past: past channels ``C_in`` (encoder variables).
        c_known: known channels ``C_known`` (decoder variables, and encoder variables with
            ``encoder_known``).
        c_static: static channels ``C_static``.
        c_out: target channels ``C_out``.
        input_steps: ``T_in``.
        horizon: ``T_out``.
        n_quantiles: ``Q`` (0 for a point forecast).
        hidden_size: model width ``D``.
        attention_heads: heads of the interpretable attention (``D`` divisible by it).
        dropout: dropout in GRNs and attention.
        lstm_layers: layers of the LSTM encoder and decoder.
        hidden_continuous_size: per-variable embedding size in variable selection
            (pytorch-forecasting's name; default ``min(hidden_size, 16)``).
        anchor: how the forecast is anchored on the last observed targets: ``"gated"``
            (learned gate per lead and target, starts as persistence), ``"residual"`` or
            ``"none"`` (see :class:`~geoclim.models.components.common.PersistenceAnchor`).
        encoder_known: also feed the known inputs at the input steps (``known_past``) to
            the encoder, as in the paper; ``False``: the encoder sees the past inputs only.

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
        hidden_size: int = 32,
        attention_heads: int = 4,
        dropout: float = 0.1,
        lstm_layers: int = 1,
        hidden_continuous_size: int | None = None,
        anchor: str = "none",
        encoder_known: bool = True,
    ):
        super().__init__()
        d = hidden_size
        self.c_out, self.n_quantiles = c_out, n_quantiles
        self.input_steps, self.horizon, self.lstm_layers = input_steps, horizon, lstm_layers
        # static covariate encoders (4.3): four contexts from the selected static embedding
        h = hidden_continuous_size
        self.static_selection = (
            VariableSelectionNetwork(c_static, d, dropout, None, h) if c_static else None
        )
        # a learned embedding stands in for the static embedding when there is no static input
        self.static_default = None if c_static else nn.Parameter(torch.zeros(d))
        self.context_selection = GatedResidualNetwork(d, d, d, dropout)
        self.context_enrichment = GatedResidualNetwork(d, d, d, dropout)
        self.context_state_h = GatedResidualNetwork(d, d, d, dropout)
        self.context_state_c = GatedResidualNetwork(d, d, d, dropout)
        # variable selection (4.2) for past (encoder) and known-future (decoder) inputs
        self.encoder_known = bool(encoder_known and c_known)
        c_encoder = c_past + (c_known if self.encoder_known else 0)
        self.encoder_selection = VariableSelectionNetwork(c_encoder, d, dropout, d, h)
        self.decoder_selection = (
            VariableSelectionNetwork(c_known, d, dropout, d, h) if c_known else None
        )
        self.lead_embedding = nn.Parameter(torch.randn(horizon, d) * 0.1)
        # sequence-to-sequence layer (4.5.1): LSTM encoder-decoder with a gated skip
        self.lstm_encoder = nn.LSTM(
            d, d, lstm_layers, batch_first=True, dropout=dropout if lstm_layers > 1 else 0.0
        )
        self.lstm_decoder = nn.LSTM(
            d, d, lstm_layers, batch_first=True, dropout=dropout if lstm_layers > 1 else 0.0
        )
        self.post_lstm_gate = GateAddNorm(d, dropout=dropout)
        # static enrichment (4.5.2), temporal self-attention (4.5.3), feed-forward (4.5.4)
        self.static_enrichment = GatedResidualNetwork(d, d, d, dropout, context_size=d)
        self.attention = InterpretableMultiHeadAttention(attention_heads, d, dropout)
        self.post_attention_gate = GateAddNorm(d, dropout=dropout)
        self.positionwise_grn = GatedResidualNetwork(d, d, d, dropout)
        self.pre_output_gate = GateAddNorm(d, dropout=None)
        # quantile outputs (4.6)
        self.head = output_head(d, c_out, n_quantiles)
        self.anchor = PersistenceAnchor(anchor, horizon, c_out)
        self.anchor.init_head(self.head)
        self.register_buffer("mask", causal_mask(input_steps, horizon), persistent=False)
        self.need_weights = False  # True: return attention weights in training mode too

    def _static_contexts(self, x_static: Tensor, n: int) -> tuple[Tensor, ...]:
        """Static ``(N, C_static)`` -> weights ``(N, C_static)`` and four contexts ``(N, D)``."""
        if self.static_selection is None:
            # one learned embedding for every sample: its contexts are computed once
            assert self.static_default is not None
            embedding = self.static_default.unsqueeze(0)  # (1, D)
            weights = x_static.new_zeros(n, 0)
        else:
            embedding, weights = self.static_selection(x_static)  # (N, D), (N, C_static)
        contexts = (
            grn(embedding).expand(n, -1)  # (N, D)
            for grn in (
                self.context_selection,
                self.context_enrichment,
                self.context_state_h,
                self.context_state_c,
            )
        )
        return (weights, *contexts)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        """Forecast all leads and return the interpretation weights.

        Args:
            batch: ``past (B, T_in, C_in, H, W)``, ``known_future (B, T_out, C_known, H, W)``,
                ``known_past (B, T_in, C_known, H, W)`` (read with ``encoder_known``),
                ``static (B, C_static, H, W)``.

        Returns:
            ``prediction (B, T_out, C_out[, Q], H, W)`` (normalised),
            ``attention (B, T_out, heads, T_in + T_out, H, W)`` (eval mode or
            ``need_weights``),
            ``static_weights (B, C_static, H, W)``,
            ``encoder_weights (B, T_in, C_in, H, W)`` (past inputs),
            ``encoder_known_weights (B, T_in, C_known, H, W)`` (known inputs at the input
            steps; zero channels without ``encoder_known``; with ``encoder_weights`` they
            sum to 1 per step),
            ``decoder_weights (B, T_out, C_known, H, W)``.

        """
        past = batch["past"]
        b, _, _, h, w = past.shape
        x_past = fold_space(past)  # (N, T_in, C_in), N = B * H * W
        c_in = x_past.shape[-1]
        if self.encoder_known:
            x_past = torch.cat([x_past, fold_space(_known_past(batch))], -1)  # (N,T_in,C_enc)
        x_known = fold_space(batch["known_future"])  # (N, T_out, C_known)
        x_static = fold_static(batch["static"])  # (N, C_static)
        n, t_in = x_past.shape[:2]

        # 1. static covariate encoders -> contexts for selection, enrichment and LSTM state
        w_static, c_select, c_enrich, c_h, c_c = self._static_contexts(x_static, n)

        # 2. variable selection, conditioned on the static selection context
        past_emb, w_encoder = self.encoder_selection(x_past, c_select.unsqueeze(1))
        # past_emb (N, T_in, D), w_encoder (N, T_in, C_enc): past channels, then known ones
        lead = self.lead_embedding.expand(n, -1, -1)  # (N, T_out, D)
        if self.decoder_selection is None:
            future_emb, w_decoder = lead, x_known.new_zeros(n, self.horizon, 0)
        else:
            future_emb, w_decoder = self.decoder_selection(x_known, c_select.unsqueeze(1))
            future_emb = future_emb + lead  # (N, T_out, D)

        # 3. LSTM encoder-decoder, initial state from the static contexts, gated skip
        state = (  # (layers, N, D) each
            c_h.unsqueeze(0).expand(self.lstm_layers, -1, -1).contiguous(),
            c_c.unsqueeze(0).expand(self.lstm_layers, -1, -1).contiguous(),
        )
        enc_out, state = self.lstm_encoder(past_emb, state)  # (N, T_in, D)
        dec_out, _ = self.lstm_decoder(future_emb, state)  # (N, T_out, D)
        lstm_out = torch.cat([enc_out, dec_out], dim=1)  # (N, T, D)
        temporal = self.post_lstm_gate(lstm_out, torch.cat([past_emb, future_emb], dim=1))

        # 4. static enrichment
        enriched = self.static_enrichment(temporal, c_enrich.unsqueeze(1))  # (N, T, D)

        # 5. interpretable multi-head self-attention, decoder queries, causal mask
        query = enriched[:, t_in:]  # (N, T_out, D)
        need_weights = self.need_weights or not self.training
        attn_out, attention = self.attention(
            query, enriched, enriched, mask=self.mask, need_weights=need_weights
        )  # attn_out (N, T_out, D), attention (N, T_out, heads, T) or None
        attn_out = self.post_attention_gate(attn_out, query)

        # 6. position-wise feed-forward and the gated skip over the whole temporal block
        out = self.positionwise_grn(attn_out)  # (N, T_out, D)
        out = self.pre_output_gate(out, temporal[:, t_in:])  # (N, T_out, D)

        # 7. quantile outputs
        y = split_outputs(self.head(out), self.c_out, self.n_quantiles)  # (N, T_out, C_out[, Q])
        prediction = unfold_space(y, b, h, w)  # (B, T_out, C_out[, Q], H, W)
        prediction = self.anchor(prediction, past)  # (B, T_out, C_out[, Q], H, W)
        outputs = {
            "prediction": prediction,
            "static_weights": unfold_static(w_static, b, h, w),
            "encoder_weights": unfold_space(w_encoder[..., :c_in], b, h, w),
            "encoder_known_weights": unfold_space(w_encoder[..., c_in:], b, h, w),
            "decoder_weights": unfold_space(w_decoder, b, h, w),
        }
        if attention is not None:
            outputs["attention"] = unfold_space(attention, b, h, w)
        return outputs


def _known_past(batch: Batch) -> Tensor:
    """``batch["known_past"]``, or a :class:`~geoclim.errors.ConfigError` naming it."""
    try:
        return batch["known_past"]
    except KeyError:
        raise ConfigError(
            "the TFT feeds the known inputs to its encoder and needs the batch field "
            "'known_past' (B, T_in, C_known, H, W) (geoclim.data.windows.gather makes it); "
            "set model.net.encoder_known=false for the decoder-only variant"
        ) from None
