"""Interpretable multi-head attention (Lim et al. 2021, section 4.4, eq. 13-16).

Heads have their own query and key projections but share one value projection, so the
head-averaged attention can be read as one importance pattern over time. The computation is
pytorch-forecasting's ``InterpretableMultiHeadAttention`` with all heads batched in one
matrix product instead of a Python loop over heads (same parameters and outputs; a test
checks the two agree). Training runs the same products and returns no weights:
``scaled_dot_product_attention`` was measured slower at these sizes (``d_k`` of 8, a few dozen
steps: its CPU flash kernel's backward took 12.8 ms against 6.0 ms for the explicit
products, and a whole TFT training step was 3.6 % cheaper without it). The value projection is
shared, so all heads of a sample meet the values in one ``(h * T_q, T_k)`` product. Dropout
masks are shared over time.
:func:`causal_mask` builds the decoder mask for fixed-length windows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from geoclim.models.components.tft.blocks import time_shared_dropout

MASK_BIAS = -1e9


def causal_mask(input_steps: int, horizon: int) -> Tensor:
    """``(T_out, T_in + T_out)`` bool mask, True where a decoder query must not look.

    Decoder step ``i`` (position ``T_in + i``) attends to every encoder step and to decoder
    steps ``0..i``; later steps are masked so no lead peeks at a later lead's inputs.
    """
    query = torch.arange(horizon).unsqueeze(1) + input_steps  # (T_out, 1)
    key = torch.arange(input_steps + horizon).unsqueeze(0)  # (1, T)
    return key > query


class InterpretableMultiHeadAttention(nn.Module):
    """Multi-head attention with a shared value projection, heads averaged (eq. 14-16).

    Args:
        n_head: number of heads ``h``.
        d_model: model width ``D`` (``d_k = D // h``).
        dropout: dropout on each head's output and on the output.
    """

    def __init__(self, n_head: int, d_model: int, dropout: float = 0.0):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"hidden_size {d_model} is not divisible by {n_head} heads")
        self.n_head, self.d_k = n_head, d_model // n_head
        self.q_layer = nn.Linear(d_model, n_head * self.d_k)  # all heads' W_Q, stacked
        self.k_layer = nn.Linear(d_model, n_head * self.d_k)
        self.v_layer = nn.Linear(d_model, self.d_k)  # shared W_V
        self.w_h = nn.Linear(self.d_k, d_model, bias=False)
        self.p = float(dropout or 0.0)  # on each head's output and on the output
        for name, p in self.named_parameters():
            if "bias" in name:
                nn.init.zeros_(p)
            else:
                nn.init.xavier_uniform_(p)

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend.

        Args:
            q: ``(N, T_q, D)`` queries.
            k: ``(N, T_k, D)`` keys.
            v: ``(N, T_k, D)`` values.
            mask: ``(T_q, T_k)`` bool, True where attention is not allowed.
            need_weights: also return the weights; ``False`` returns ``None`` for them
                (training, where nobody reads them).

        Returns:
            Output ``(N, T_q, D)`` and attention weights ``(N, T_q, h, T_k)`` (or ``None``).
        """
        n, t_q, _ = q.shape
        t_k, h, d_k = k.shape[1], self.n_head, self.d_k
        # (N * h, T, d_k): one batched product over all samples' heads
        qh = self.q_layer(q).view(n, t_q, h, d_k).transpose(1, 2).reshape(n * h, t_q, d_k)
        kh = self.k_layer(k).view(n, t_k, h, d_k).transpose(1, 2).reshape(n * h, t_k, d_k)
        vh = self.v_layer(v)  # (N, T_k, d_k), one value projection for all heads
        bias = q.new_zeros(())  # the mask as an additive bias of the scores
        if mask is not None:
            bias = bias.expand(mask.shape).masked_fill(mask, MASK_BIAS)  # (T_q, T_k)
        scores = torch.baddbmm(bias, qh, kh.transpose(1, 2), alpha=1.0 / math.sqrt(d_k))
        attn = torch.softmax(scores, dim=-1).view(n, h * t_q, t_k)  # (N, h * T_q, T_k)
        # the value projection is shared: all heads of a sample in one (h * T_q, T_k) product
        heads = torch.bmm(attn, vh).view(n, h, t_q, d_k)  # (N, h, T_q, d_k)
        heads = time_shared_dropout(heads, self.p, self.training)
        out = time_shared_dropout(self.w_h(heads.mean(dim=1)), self.p, self.training)
        if not need_weights:
            return out, None
        return out, attn.view(n, h, t_q, t_k).transpose(1, 2)  # (N, T_q, h, T_k)

    def load_reference(self, reference: Any) -> None:
        """Copy the weights of pytorch-forecasting's ``InterpretableMultiHeadAttention``.

        ``reference`` is typed ``Any``: pytorch-forecasting ships no type information, and its
        ``q_layers`` / ``k_layers`` (``nn.ModuleList`` of ``nn.Linear``) are read as such.
        """
        with torch.no_grad():
            self.q_layer.weight.copy_(torch.cat([m.weight for m in reference.q_layers]))
            self.q_layer.bias.copy_(torch.cat([m.bias for m in reference.q_layers]))
            self.k_layer.weight.copy_(torch.cat([m.weight for m in reference.k_layers]))
            self.k_layer.bias.copy_(torch.cat([m.bias for m in reference.k_layers]))
            self.v_layer.load_state_dict(reference.v_layer.state_dict())
            self.w_h.load_state_dict(reference.w_h.state_dict())
