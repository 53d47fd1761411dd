"""The TFT's gating blocks (Lim et al. 2021, section 4.1), with time-shared dropout.

The gated linear unit (GLU), the gated residual network (GRN, eq. 2-4) and the gated
add-and-norm compute what pytorch-forecasting's blocks compute, with the same parameter
names (a reference block's ``state_dict`` loads as is, and ``tests/models/test_tft.py``
checks the outputs agree), but dropout draws one mask per sequence and feature, shared over
time (variational dropout, Gal & Ghahramani 2016) instead of a fresh mask per element: the
regulariser of recurrent and attention models, and ``T`` times fewer random draws per layer.

:class:`VariableGRN` adds what pytorch-forecasting lacks: one GRN *per variable* for all
variables at once (batched matrix products over a variable axis instead of a Python loop
over variables).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoclim.models.components.tft.fused import glu_residual, norm_affine

__all__ = [
    "GateAddNorm",
    "GatedLinearUnit",
    "GatedResidualNetwork",
    "TimeSharedDropout",
    "VariableGRN",
    "time_shared_dropout",
]


def time_shared_dropout(
    x: Tensor, p: float, training: bool, steps: int = 0, inplace: bool = False
) -> Tensor:
    """Dropout with one mask per sequence and feature, shared over the time axis.

    Args:
        x: ``(..., T, D)`` sequences (time second to last) or ``(N, D)`` rows.
        p: drop probability.
        training: apply it (identity otherwise, as ``nn.Dropout`` in eval mode).
        steps: when ``> 0``, ``x`` is ``(..., M, D)`` with ``M = N * steps`` rows that are
            ``N`` sequences of ``steps`` steps each (the variable-major layout of
            :class:`VariableGRN`); ``0`` means time is axis ``-2`` (or no time, for 2-D ``x``).
        inplace: scale ``x`` itself (a fresh intermediate whose autograd node does not keep
            it) instead of a new tensor: one allocation less.

    Returns:
        ``x`` with the dropped entries zeroed and the kept ones scaled by ``1 / (1 - p)``.
    """
    if not training or p == 0.0:
        return x
    if steps:
        shape = (*x.shape[:-2], x.shape[-2] // steps, 1, x.shape[-1])  # (..., N, 1, D)
        mask = _keep_mask(x, shape, p)
        if inplace:
            x.unflatten(-2, (-1, steps)).mul_(mask)
            return x
        return (x.unflatten(-2, (-1, steps)) * mask).flatten(-3, -2)
    shape = x.shape if x.dim() < 3 else (*x.shape[:-2], 1, x.shape[-1])
    mask = _keep_mask(x, shape, p)
    return x.mul_(mask) if inplace else x * mask


def _keep_mask(x: Tensor, shape: tuple[int, ...], p: float) -> Tensor:
    """Dropout's scaled keep mask of ``shape``: ``1 / (1 - p)`` with probability ``1 - p``."""
    return x.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)


class TimeSharedDropout(nn.Module):
    """:func:`time_shared_dropout` as a module (``p = None`` or ``0``: identity)."""

    def __init__(self, p: float | None = None):
        super().__init__()
        self.p = float(p or 0.0)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., T, D)`` or ``(N, D)`` -> same shape."""
        return time_shared_dropout(x, self.p, self.training)


def _feature_major_dropout(x: Tensor, p: float, training: bool, steps: int) -> Tensor:
    """:func:`time_shared_dropout` of ``x (D, M)``, ``M = N * steps`` rows, features first.

    The mask is drawn as :func:`time_shared_dropout` draws it for the ``(N, steps, D)``
    layout (``(N, 1, D)``, same order of random numbers), so both layouts drop the same entries.
    """
    if not training or p == 0.0:
        return x
    d, m = x.shape
    mask = _keep_mask(x, (m // steps, 1, d), p)  # (N, 1, D)
    return (x.view(d, m // steps, steps) * mask.permute(2, 0, 1)).view(d, m)


def _norm_first(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    """``norm`` over the first axis of ``x (D, M)``: each column normalised, then the affine.

    The same function as ``norm(x.T).T`` (biased variance, ``norm.eps``). Each pass runs along
    rows of ``M``; ATen's layer norm over a last axis of a few features pays per row.
    """
    mean = x.mean(0)
    centred = x - mean
    rstd = torch.rsqrt(centred.square().mean(0) + norm.eps)
    return torch.addcmul(norm.bias.unsqueeze(1), centred * rstd, norm.weight.unsqueeze(1))


class GatedLinearUnit(nn.Module):
    """``GLU(x) = sigmoid(W4 x + b4) * (W5 x + b5)`` after dropout (eq. 5).

    Args:
        input_size: input width.
        hidden_size: output width (default ``input_size``).
        dropout: dropout before the linear layer (``None``: none).
    """

    def __init__(
        self, input_size: int, hidden_size: int | None = None, dropout: float | None = None
    ):
        super().__init__()
        self.hidden_size = hidden_size or input_size
        self.dropout = TimeSharedDropout(dropout)
        self.fc = nn.Linear(input_size, self.hidden_size * 2)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., input_size)`` -> ``(..., hidden_size)``."""
        return F.glu(self.fc(self.dropout(x)), dim=-1)


class AddNorm(nn.Module):
    """``LayerNorm(x + skip)`` (pytorch-forecasting's ``AddNorm`` without a trainable add)."""

    def __init__(self, input_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(input_size)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """``(..., D)``, ``(..., D)`` -> ``(..., D)``."""
        return self.norm(x + skip)


class GateAddNorm(nn.Module):
    """Gated skip connection: ``LayerNorm(skip + GLU(x))`` (eq. 2 and the gates of fig. 2).

    Args:
        input_size: width of ``x``.
        hidden_size: width of the output and of ``skip`` (default ``input_size``).
        dropout: dropout before the GLU (``None``: none).
    """

    def __init__(
        self, input_size: int, hidden_size: int | None = None, dropout: float | None = None
    ):
        super().__init__()
        self.hidden_size = hidden_size or input_size
        self.glu = GatedLinearUnit(input_size, self.hidden_size, dropout)
        self.add_norm = AddNorm(self.hidden_size)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """``(..., input_size)``, ``(..., hidden_size)`` -> ``(..., hidden_size)``."""
        # the GLU's output is a fresh tensor its backward does not keep: add the skip in place
        return self.add_norm.norm(self.glu(x).add_(skip))

    def forward_t(self, x: Tensor, skip: Tensor, steps: int = 1) -> Tensor:
        """:meth:`forward` with features first: ``x (input_size, M)``, ``skip (hidden, M)``.

        ``M = N * steps`` rows of ``N`` sequences (dropout masks per sequence). Returns
        ``(hidden_size, M)``.
        """
        glu, d = self.glu, self.hidden_size
        x = _feature_major_dropout(x, glu.dropout.p, self.training, steps)
        gated = torch.addmm(glu.fc.bias.unsqueeze(1), glu.fc.weight, x)  # (2 * hidden, M)
        return _norm_first(
            torch.addcmul(skip, gated[:d], torch.sigmoid(gated[d:])), self.add_norm.norm
        )


class GatedResidualNetwork(nn.Module):
    """``GRN(a, c) = LayerNorm(a + GLU(W1 ELU(W2 a + W3 c + b2) + b1))`` (eq. 2-4).

    When ``input_size != output_size`` the residual is resampled to the output width by
    pytorch-forecasting's ``ResampleNorm`` (interpolation), as in the reference.

    Args:
        input_size: width of ``a``.
        hidden_size: width of the hidden layers.
        output_size: output width.
        dropout: dropout before the GLU.
        context_size: width of the static context ``c`` (``None``: no context).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        dropout: float = 0.1,
        context_size: int | None = None,
    ):
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        if input_size != output_size:  # imported here: only a resampling GRN needs it
            from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import (
                ResampleNorm,
            )

            self.resample_norm = ResampleNorm(input_size, output_size)
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.context = (
            None if context_size is None else nn.Linear(context_size, hidden_size, bias=False)
        )
        self.fc2 = nn.Linear(hidden_size, hidden_size)
        for layer in (self.fc1, self.fc2):
            nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in", nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)
        if self.context is not None:
            nn.init.xavier_uniform_(self.context.weight)
        self.gate_norm = GateAddNorm(hidden_size, output_size, dropout)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``x (..., input_size)``, ``context`` broadcastable to ``(..., context_size)``.

        Returns:
            ``(..., output_size)``.
        """
        residual = x if self.input_size == self.output_size else self.resample_norm(x)
        return self._tail(self.fc1(x), residual, context)

    def forward_affine_t(
        self, xt: Tensor, a: Tensor, b: Tensor, context: Tensor | None = None, steps: int = 1
    ) -> Tensor:
        """``forward(x @ a + b, context)`` of ``x = xt.T`` without building ``x @ a + b``.

        Features come first: ``xt (K, M)`` -> ``(output_size, M)``. For an input that is an
        affine map of a few features (variable selection's weight GRN sees ``V`` scalars
        embedded in ``V * H``), both maps that read it are linear: the first layer is
        ``x @ (a @ W1^T) + (b @ W1^T + b1)``, and the residual's linear interpolation to the
        output width (pytorch-forecasting's ``ResampleNorm``) acts row by row, so it is
        ``x @ interp(a) + interp(b)``: ``(K, .)`` products instead of ``(input_size, .)``.

        Variable selection's weight GRN maps ``V`` values to ``V`` logits. In the
        ``(..., V)`` layout every element-wise pass, layer norm and softmax over so narrow a
        last axis pays per row on CPU; with the ``M = N * steps`` rows as the last axis the
        same function runs along contiguous rows.

        Args:
            xt: ``(K, M)`` the features, ``M = N * steps`` rows.
            a: ``(K, input_size)`` the map's matrix.
            b: ``(input_size,)`` its offset.
            context: ``(N, 1, C)`` per sequence or ``(N, C)`` per row (``steps = 1``).
            steps: rows per sequence (one context and one dropout mask per sequence).

        Returns:
            ``(output_size, M)``: ``forward(xt.T @ a + b, context)`` transposed.
        """
        ab = torch.cat([a, b.unsqueeze(0)])  # (K + 1, input_size)
        first = F.linear(ab, self.fc1.weight)  # (K + 1, hidden)
        offset = (first[-1] + self.fc1.bias).unsqueeze(1)  # (hidden, 1)
        eta = torch.addmm(offset, first[:-1].T, xt)  # (hidden, M)
        if self.input_size == self.output_size:
            residual = torch.addmm(b.unsqueeze(1), a.T, xt)  # the input itself, (out, M)
        else:
            rs = self.resample_norm
            resampled = rs.resample(ab)  # (K + 1, output_size), linear in each row
            residual = torch.addmm(resampled[-1].unsqueeze(1), resampled[:-1].T, xt)
            if rs.trainable_add:
                residual = residual * (rs.gate(rs.mask) * 2.0).unsqueeze(1)
            residual = _norm_first(residual, rs.norm)
        if context is not None and self.context is not None:
            c = self.context(context).reshape(-1, eta.shape[0])  # (N, hidden)
            eta = (eta.unflatten(1, (c.shape[0], -1)) + c.T.unsqueeze(-1)).flatten(1)
        eta = torch.addmm(self.fc2.bias.unsqueeze(1), self.fc2.weight, F.elu(eta))
        return self.gate_norm.forward_t(eta, residual, steps)

    def _tail(self, eta: Tensor, residual: Tensor, context: Tensor | None) -> Tensor:
        """Context, ELU, second layer and the gated skip: eq. 2-4 after the first layer."""
        if context is not None and self.context is not None:
            eta = eta + self.context(context)  # (N, 1, hidden) broadcast over time
        eta = self.fc2(F.elu(eta))
        return self.gate_norm(eta, residual)


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
        dropout: dropout before the GLU, as in the paper (shared over time).
    """

    def __init__(self, n_vars: int, input_size: int, output_size: int, dropout: float = 0.0):
        super().__init__()
        self.output_size, self.p = output_size, float(dropout or 0.0)
        self.fc1_w = _per_variable(n_vars, input_size, input_size, math.sqrt(2.0))
        self.fc1_b = nn.Parameter(torch.zeros(n_vars, input_size))
        self.fc2_w = _per_variable(n_vars, input_size, input_size, math.sqrt(2.0))
        self.fc2_b = nn.Parameter(torch.zeros(n_vars, input_size))
        self.glu_w = _per_variable(n_vars, input_size, 2 * output_size, 1.0)
        self.glu_b = nn.Parameter(torch.zeros(n_vars, 2 * output_size))
        self.norm_w = nn.Parameter(torch.ones(n_vars, output_size))
        self.norm_b = nn.Parameter(torch.zeros(n_vars, output_size))

    def forward(self, e: Tensor, skip: Tensor, steps: int = 1) -> Tensor:
        """Variable-major ``e (V, M, H)`` and ``skip (V, M, D)`` -> ``(V, M, D)``.

        ``M = N * steps`` rows: ``N`` sequences of ``steps`` time steps (one dropout mask
        per sequence). Keeping the variable axis first lets each layer be one ``baddbmm``
        (bias fused) over the ``V`` weight matrices, with no transposes in between.
        """
        eta = F.elu(torch.baddbmm(self.fc1_b.unsqueeze(1), e, self.fc1_w), inplace=True)
        # the GLU's output is fresh and its backward does not keep it: add the skip in place
        gated = self._glu_linear(self._hidden(eta, steps))  # (V, M, 2D)
        return self.normalize(F.glu(gated, dim=-1).add_(skip))  # (V, M, D)

    def forward_scalars(
        self,
        xv: Tensor,
        embed_w: Tensor,
        embed_b: Tensor,
        skip_w: Tensor,
        skip_b: Tensor,
        steps: int = 1,
    ) -> Tensor:
        """The GRNs of linearly embedded scalars, ``e = x * embed_w + embed_b``, without ``e``.

        The same function and gradients as ``forward(e, x * skip_w + skip_b)``, computed
        from :meth:`hidden_scalars` (see there).

        Args:
            xv: ``(V, M, 1)`` the variables' values, variable-major.
            embed_w: ``(V, H)`` embedding slopes.
            embed_b: ``(V, H)`` embedding offsets.
            skip_w: ``(V, D)`` residual slopes.
            skip_b: ``(V, D)`` residual offsets.
            steps: time steps per sequence (dropout masks).

        Returns:
            ``(V, M, D)``.
        """
        hidden, x1, skip = self.hidden_scalars(xv, embed_w, embed_b, skip_w, skip_b, steps)
        return self.normalize(glu_residual(self._glu_linear(hidden), x1, skip))  # (V, M, D)

    def hidden_scalars(
        self,
        xv: Tensor,
        embed_w: Tensor,
        embed_b: Tensor,
        skip_w: Tensor,
        skip_b: Tensor,
        steps: int = 1,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`forward_scalars` up to the GLU's linear layer: its input and the residual.

        ``fc1(e) = x * (embed_w @ W1) + (embed_b @ W1 + b1)`` is again one scalar times a
        vector per variable, so the first layer is an outer product instead of an
        ``(M, H) x (H, H)`` matrix product, and the ``(V, M, H)`` embedding is never
        materialised. The residual ``skip = x * skip_w + skip_b`` is rank one per variable
        too, ``[x, 1] @ [skip_w; skip_b]``, so the ``(V, M, D)`` skip tensor is never built
        (:func:`~geoclim.models.components.tft.fused.glu_residual` adds it to the GLU's output
        in place; variable selection fuses the GLU layer, residual, layer norm and mixing in
        :func:`~geoclim.models.components.tft.fused.glu_norm_mix`).

        Returns:
            ``hidden (V, M, H)`` (the input of the GLU's linear layer ``glu_w``, ``glu_b``),
            ``x1 (V, M, 2)`` (``[x, 1]``) and ``skip (V, 2, D)`` (``[skip_w; skip_b]``).
        """
        slope = embed_w.unsqueeze(1) @ self.fc1_w  # (V, 1, H)
        offset = torch.baddbmm(self.fc1_b.unsqueeze(1), embed_b.unsqueeze(1), self.fc1_w)
        eta = F.elu(torch.baddbmm(offset, xv, slope), inplace=True)  # (V, M, H)
        x1 = torch.cat([xv, torch.ones_like(xv)], dim=-1)  # (V, M, 2): [x, 1]
        skip = torch.stack([skip_w, skip_b], dim=1)  # (V, 2, D)
        return self._hidden(eta, steps), x1, skip

    def normalize(self, r: Tensor) -> Tensor:
        """Per-variable layer norm with its own affine: ``(V, M, D)`` -> ``(V, M, D)``."""
        return norm_affine(r, self.norm_w, self.norm_b, self.output_size)

    def _hidden(self, eta: Tensor, steps: int) -> Tensor:
        """Second layer and dropout: ``(V, M, H)`` -> ``(V, M, H)``, the GLU layer's input.

        Dropout scales the second layer's output in place (the matrix products' backward
        keeps their inputs only, so no copy is needed).
        """
        eta = torch.baddbmm(self.fc2_b.unsqueeze(1), eta, self.fc2_w)  # (V, M, H)
        return time_shared_dropout(eta, self.p, self.training, steps=steps, inplace=True)

    def _glu_linear(self, hidden: Tensor) -> Tensor:
        """The GLU's linear layer: ``(V, M, H)`` -> ``(V, M, 2D)``."""
        return torch.baddbmm(self.glu_b.unsqueeze(1), hidden, self.glu_w)
