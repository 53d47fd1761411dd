"""Interpretable multi-head attention (Lim et al. 2021, section 4.4, eq. 13-16).

Heads have their own query and key projections but share one value projection, so the
head-averaged attention can be read as one importance pattern over time. The computation is
pytorch-forecasting's ``InterpretableMultiHeadAttention`` with all heads batched in one
matrix product instead of a Python loop over heads (same parameters and outputs; a test
checks the two agree). When the weights are not needed (training) the heads run through
the fused ``scaled_dot_product_attention`` kernel instead; dropout masks are shared over time.
:func:`causal_mask` builds the decoder mask for fixed-length windows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
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
            need_weights: also return the weights (explicit softmax); ``False`` runs the
                fused ``scaled_dot_product_attention`` kernel and returns ``None`` for them
                (training, where nobody reads them).

        Returns:
            Output ``(N, T_q, D)`` and attention weights ``(N, T_q, h, T_k)`` (or ``None``).
        """
        n, t_q, _ = q.shape
        t_k = k.shape[1]
        qh = self.q_layer(q).view(n, t_q, self.n_head, self.d_k).transpose(1, 2)  # (N,h,Tq,dk)
        kh = self.k_layer(k).view(n, t_k, self.n_head, self.d_k).transpose(1, 2)  # (N,h,Tk,dk)
        vh = self.v_layer(v).unsqueeze(1)  # (N, 1, T_k, d_k), one value projection for all heads
        attn = None
        if need_weights:
            scores = (qh / math.sqrt(self.d_k)) @ kh.transpose(-1, -2)  # (N, h, T_q, T_k)
            if mask is not None:
                scores = scores.masked_fill(mask, MASK_BIAS)
            attn = torch.softmax(scores, dim=-1)  # (N, h, T_q, T_k)
            heads = attn @ vh  # (N, h, T_q, d_k)
        else:
            allowed = None if mask is None else ~mask
            heads = F.scaled_dot_product_attention(
                qh, kh, vh.expand(-1, self.n_head, -1, -1), attn_mask=allowed
            )  # (N, h, T_q, d_k)
        heads = time_shared_dropout(heads, self.p, self.training)
        out = time_shared_dropout(self.w_h(heads.mean(dim=1)), self.p, self.training)
        return out, None if attn is None else attn.transpose(1, 2)  # (N, T_q, h, T_k)

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
