"""The TFT's gating blocks (Lim et al. 2021, section 4.1).

The gated linear unit (GLU), the gated residual network (GRN, eq. 2-4) and the gated
add-and-norm are pytorch-forecasting's tested implementations, re-exported here so the TFT
reads as the paper's parts. :class:`VariableGRN` adds what pytorch-forecasting lacks: one GRN
*per variable* for all variables at once (batched matrix products over a variable axis instead of a
Python loop over variables), which is where the reference implementation spends much of its
time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import (
    AddNorm,
    GateAddNorm,
    GatedLinearUnit,
    GatedResidualNetwork,
)
from torch import Tensor, nn

__all__ = ["AddNorm", "GateAddNorm", "GatedLinearUnit", "GatedResidualNetwork", "VariableGRN"]


def _per_variable(n_vars: int, fan_in: int, fan_out: int, gain: float) -> nn.Parameter:
    """``(V, fan_in, fan_out)`` weights, one Linear per variable, scaled like Kaiming/Xavier."""
    return nn.Parameter(torch.randn(n_vars, fan_in, fan_out) * gain / math.sqrt(fan_in))


class VariableGRN(nn.Module):
    """``V`` independent gated residual networks over embedded variables, computed together.

    Implements eq. 2-4 of the paper for each variable ``v`` with its own weights::

        eta2 = ELU(W2_v e + b2_v);  eta1 = W1_v eta2 + b1_v
        GRN_v(e, skip) = LayerNorm_v(skip + GLU_v(eta1))

    where ``e`` is the variable's embedding (size ``H``) and ``skip`` its embedding in the
    output size ``D`` (the reference resamples ``e`` to ``D`` by interpolation; a linear
    embedding is cheaper and what the paper describes).

    Args:
        n_vars: number of variables ``V``.
        input_size: embedding size ``H`` (pytorch-forecasting's ``hidden_continuous_size``).
        output_size: output size ``D`` (the model width).
        dropout: dropout before the GLU, as in the paper.
    """

    def __init__(self, n_vars: int, input_size: int, output_size: int, dropout: float = 0.0):
        super().__init__()
        self.output_size = output_size
        self.fc1_w = _per_variable(n_vars, input_size, input_size, math.sqrt(2.0))
        self.fc1_b = nn.Parameter(torch.zeros(n_vars, input_size))
        self.fc2_w = _per_variable(n_vars, input_size, input_size, math.sqrt(2.0))
        self.fc2_b = nn.Parameter(torch.zeros(n_vars, input_size))
        self.glu_w = _per_variable(n_vars, input_size, 2 * output_size, 1.0)
        self.glu_b = nn.Parameter(torch.zeros(n_vars, 2 * output_size))
        self.norm_w = nn.Parameter(torch.ones(n_vars, output_size))
        self.norm_b = nn.Parameter(torch.zeros(n_vars, output_size))
        self.dropout = nn.Dropout(dropout)

    def forward(self, e: Tensor, skip: Tensor) -> Tensor:
        """Variable-major ``e (V, M, H)`` and ``skip (V, M, D)`` -> ``(V, M, D)``.

        Keeping the variable axis first lets each layer be one ``baddbmm`` (bias fused) over
        the ``V`` weight matrices, with no transposes in between.
        """
        eta = F.elu(torch.baddbmm(self.fc1_b.unsqueeze(1), e, self.fc1_w))  # (V, M, H)
        eta = torch.baddbmm(self.fc2_b.unsqueeze(1), eta, self.fc2_w)  # (V, M, H)
        gated = torch.baddbmm(self.glu_b.unsqueeze(1), self.dropout(eta), self.glu_w)
        out = F.glu(gated, dim=-1) + skip  # (V, M, D)
        out = F.layer_norm(out, (self.output_size,))
        return out * self.norm_w.unsqueeze(1) + self.norm_b.unsqueeze(1)
