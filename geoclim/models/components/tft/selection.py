"""Variable selection networks (Lim et al. 2021, section 4.2, eq. 6-8).

Each real input variable is embedded linearly (the paper's "linear transformation" of
continuous inputs) and transformed by its own GRN (eq. 7); the results are mixed with softmax
weights computed by one GRN over all embeddings, conditioned on a static context (eq. 6).
The weights are returned: they are the network's variable importances. As in
pytorch-forecasting, variables are embedded in a small size ``H`` (its
``hidden_continuous_size``) and the per-variable GRNs map ``H`` to the model width ``D``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geoclim.models.components.tft.blocks import GatedResidualNetwork, VariableGRN
from geoclim.models.components.tft.fused import glu_norm_mix


class VariableSelectionNetwork(nn.Module):
    """Select among ``V`` real variables, per time step (or once, for static inputs).

    Args:
        n_vars: number of variables ``V`` (>= 1).
        hidden_size: model width ``D``.
        dropout: dropout inside the GRNs.
        context_size: size of the static context (``None``: no context).
        embedding_size: per-variable embedding size ``H`` (default ``min(D, 16)``).
    """

    def __init__(
        self,
        n_vars: int,
        hidden_size: int,
        dropout: float = 0.0,
        context_size: int | None = None,
        embedding_size: int | None = None,
    ):
        super().__init__()
        h = embedding_size or min(hidden_size, 16)
        self.n_vars, self.hidden_size = n_vars, hidden_size
        # one Linear(1, H) and one Linear(1, D) per variable, as (V, H) / (V, D) weights
        self.embed_w = nn.Parameter(torch.randn(n_vars, h))
        self.embed_b = nn.Parameter(torch.zeros(n_vars, h))
        self.skip_w = nn.Parameter(torch.randn(n_vars, hidden_size) * 0.1)
        self.skip_b = nn.Parameter(torch.zeros(n_vars, hidden_size))
        self.variable_grns = VariableGRN(n_vars, h, hidden_size, dropout)
        self.weight_grn = (
            GatedResidualNetwork(
                n_vars * h, min(hidden_size, n_vars), n_vars, dropout, context_size
            )
            if n_vars > 1
            else None
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Embed, transform and mix the variables.

        Args:
            x: ``(..., V)`` real inputs (``(N, T, V)`` temporal or ``(N, V)`` static).
            context: ``(N, 1, C)`` for temporal or ``(N, C)`` for static inputs.

        Returns:
            Selected embedding ``(..., D)`` and selection weights ``(..., V)``.
        """
        lead, n_vars = x.shape[:-1], x.shape[-1]
        steps = x.shape[1] if x.dim() == 3 else 1  # dropout masks are shared over time
        rows = x.reshape(-1, n_vars)  # (M, V), M = prod(...)
        xv = rows.T.contiguous().unsqueeze(-1)  # (V, M, 1) variable-major
        grns = self.variable_grns
        scalars = (xv, self.embed_w, self.embed_b, self.skip_w, self.skip_b, steps)
        if self.weight_grn is None:
            weights = torch.ones_like(x)  # (..., 1)
            processed = grns.forward_scalars(*scalars)  # (1, M, D)
            return processed[0].reshape(*lead, self.hidden_size), weights
        # up to the GLU's linear layer; the skip x * skip_w + skip_b stays rank one
        hidden, x1, skip = grns.hidden_scalars(*scalars)  # (V, M, H), (V, M, 2), (V, 2, D)
        # the weight GRN reads the embeddings side by side, (..., V * H) = x @ block + embed_b
        # with a block-diagonal (V, V * H) matrix: it folds the map into its first layers
        eye = torch.eye(n_vars, dtype=x.dtype, device=x.device)
        block = (eye.unsqueeze(-1) * self.embed_w.unsqueeze(0)).flatten(1)  # (V, V * H)
        # features first: (V, M) logits and weights, rows of M along the last axis
        logits = self.weight_grn.forward_affine_t(
            xv[..., 0], block, self.embed_b.flatten(), context, steps
        )
        weights = torch.softmax(logits, dim=0)  # (V, M)
        # GLU layer, residual, layer norm, per-variable affine and weighted sum in one pass
        selected = glu_norm_mix(
            hidden,
            grns.glu_w,
            grns.glu_b,
            x1,
            skip,
            grns.norm_w,
            grns.norm_b,
            weights,
            size=self.hidden_size,
        )  # (M, D)
        return selected.reshape(*lead, self.hidden_size), weights.T.reshape(*lead, n_vars)
