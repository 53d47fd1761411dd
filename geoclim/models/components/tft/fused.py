"""The tail of variable selection's per-variable GRNs and the mixing, in one pass.

For each of ``V`` variables, the per-variable GRN (Lim et al. 2021, eq. 2-4 and 7) ends in
a GLU of a linear layer of its hidden state ``h_v``, a rank-one residual (the variable's
value ``x`` embedded as ``x * skip_w + skip_b``), and a layer norm with the variable's own
affine ``(g_v, b_v)``; variable selection then sums the results with softmax weights
(eq. 8)::

    [a_v, c_v] = h_v @ W_v + b_v                       (the GLU's linear layer, 2D wide)
    r_v = a_v * sigmoid(c_v) + [x_v, 1] @ [skip_w_v; skip_b_v]
    selected[m] = sum_v w[v, m] * (LayerNorm(r_v[m]) * g_v + b_v)

Done op by op, autograd writes and reads about ten ``(V, M, D)`` tensors forward and twenty
backward (GLU output, residual sum, normalised values, affine, weighted products and each
one's gradient); at the benchmark size (``6 x 6144 x 32``) each pass goes to memory.
:class:`GluNormMix` computes the same function one variable at a time so that each
``(M, D)`` intermediate stays in cache: forward reads the GLU's value and gate halves once
and writes only the ``(M, D)`` result; backward recomputes each variable's gate, residual
sum and layer norm (cheaper than keeping them) and writes the gradients of both halves
once. The halves are two contiguous ``(V, M, D)`` products, not the two halves of one
``(V, M, 2D)`` product: the sigmoid of a half-row view runs at a third of the speed of a
contiguous one on CPU, and ATen's GLU backward recomputes it. Without gradients
(inference, ONNX export) the plain ops run: one product and ``F.glu``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GluNormMix", "glu_norm_mix", "glu_norm_mix_reference", "glu_residual"]

EPS = 1e-5  # torch.nn.functional.layer_norm's default
_norm = torch.ops.aten.native_layer_norm
_norm_backward = torch.ops.aten.native_layer_norm_backward
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input


def glu_residual(gated: Tensor, x1: Tensor, skip: Tensor) -> Tensor:
    """``GLU(gated) + x1 @ skip``: ``(V, M, 2D), (V, M, 2), (V, 2, D)`` -> ``(V, M, D)``.

    The GLU's output is a fresh tensor its backward does not keep: the rank-one residual is
    added to it in place by one ``baddbmm_`` (no ``(V, M, D)`` skip tensor is built).
    """
    return F.glu(gated, dim=-1).baddbmm_(x1, skip)


def norm_affine(r: Tensor, weight: Tensor, bias: Tensor, size: int) -> Tensor:
    """Each variable's layer norm with its own affine: ``(V, M, D)`` -> ``(V, M, D)``.

    ``weight`` and ``bias`` are ``(V, D)``; ``size`` is ``D`` as a Python int.
    """
    normed = F.layer_norm(r, (size,), eps=EPS)  # (V, M, D)
    return torch.addcmul(bias.unsqueeze(1), normed, weight.unsqueeze(1))


def glu_norm_mix_reference(
    hidden: Tensor,
    glu_w: Tensor,
    glu_b: Tensor,
    x1: Tensor,
    skip: Tensor,
    weight: Tensor,
    bias: Tensor,
    w: Tensor,
    size: int,
) -> Tensor:
    """:func:`glu_norm_mix` op by op (``size`` = ``D``, a Python int for ONNX tracing)."""
    gated = torch.baddbmm(glu_b.unsqueeze(1), hidden, glu_w)  # (V, M, 2D)
    processed = norm_affine(glu_residual(gated, x1, skip), weight, bias, size)  # (V, M, D)
    return (processed * w.unsqueeze(-1)).sum(dim=0)  # (M, D)


def _residual(value: Tensor, gate: Tensor, x1: Tensor, skip: Tensor, out: Tensor) -> Tensor:
    """One variable's residual sum ``(M, D)``: ``value * sigmoid(gate)`` plus the skip.

    ``out`` receives the sigmoid (``(M, D)``, reused for every variable).
    """
    return torch.mul(value, torch.sigmoid(gate, out=out)).addmm_(x1, skip)


class GluNormMix(torch.autograd.Function):
    """``sum_v w[v, :, None] * (LayerNorm(r_v) * weight[v] + bias[v])`` of GLU residuals ``r_v``.

    ``r_v = value[v] * sigmoid(gate[v]) + x1[v] @ skip[v]``. Inputs ``value``, ``gate``
    ``(V, M, D)`` (contiguous), ``x1 (V, M, 2)``, ``skip (V, 2, D)``, ``weight (V, D)``,
    ``bias (V, D)``, ``w (V, M)``; output ``(M, D)``. The values of
    :func:`glu_norm_mix_reference` up to the order of the floating-point sum over variables,
    and that function's exact gradients.
    """

    @staticmethod
    def forward(
        ctx: Any,
        value: Tensor,
        gate: Tensor,
        x1: Tensor,
        skip: Tensor,
        weight: Tensor,
        bias: Tensor,
        w: Tensor,
    ) -> Tensor:
        """Gate, residual, normalise, scale and accumulate one ``(M, D)`` variable at a time."""
        d = skip.shape[-1]
        sig = torch.empty_like(value[0])  # (M, D), each variable's sigmoid in turn
        out = torch.zeros_like(sig)
        for v in range(value.shape[0]):
            r = _residual(value[v], gate[v], x1[v], skip[v], sig)
            p = _norm(r, [d], weight[v], bias[v], EPS)[0]  # (M, D)
            out.addcmul_(p, w[v].unsqueeze(1))  # w[v] as (M, 1)
        ctx.save_for_backward(value, gate, x1, skip, weight, bias, w)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        """``grad (M, D)`` -> gradients of every input (each ``(V, M, D)`` written once)."""
        value, gate, x1, skip, weight, bias, w = ctx.saved_tensors
        grad = grad.contiguous()  # (M, D)
        d = skip.shape[-1]
        d_value, d_gate, d_skip, d_weight, d_bias = (
            torch.empty_like(t) for t in (value, gate, skip, weight, bias)
        )
        # [x, 1] is built from the inputs, which need no gradient in training
        d_x1 = torch.empty_like(x1) if ctx.needs_input_grad[2] else None
        d_w = torch.empty_like(w)  # (V, M), one row per variable
        d_r, sig, tmp = (torch.empty_like(grad) for _ in range(3))  # (M, D), reused
        for v in range(value.shape[0]):
            r = _residual(value[v], gate[v], x1[v], skip[v], sig)  # recomputed, in cache
            p, mean, rstd = _norm(r, [d], weight[v], bias[v], EPS)
            torch.linalg.vecdot(grad, p, out=d_w[v])  # d w[v]: <grad, p> per row
            _norm_backward.out(
                grad * w[v].unsqueeze(1),  # d p
                r,
                [d],
                mean,
                rstd,
                weight[v],
                bias[v],
                [True, True, True],
                out0=d_r,
                out1=d_weight[v],
                out2=d_bias[v],
            )
            torch.mm(x1[v].T, d_r, out=d_skip[v])  # (2, D)
            if d_x1 is not None:
                torch.mm(d_r, skip[v].T, out=d_x1[v])  # (M, 2)
            torch.mul(d_r, sig, out=d_value[v])  # d value = d_r * sigmoid(gate)
            # d gate = d_r * value * sigmoid' (gate), sigmoid' = sig * (1 - sig)
            _sigmoid_backward(torch.mul(d_r, value[v], out=tmp), sig, grad_input=d_gate[v])
        return d_value, d_gate, d_x1, d_skip, d_weight, d_bias, d_w


def glu_norm_mix(
    hidden: Tensor,
    glu_w: Tensor,
    glu_b: Tensor,
    x1: Tensor,
    skip: Tensor,
    weight: Tensor,
    bias: Tensor,
    w: Tensor,
    size: int,
) -> Tensor:
    """The per-variable GRN tails mixed by ``w``: ``(V, M, H)`` -> ``(M, D)``.

    Args:
        hidden: ``(V, M, H)`` each variable's hidden state (the GLU layer's input).
        glu_w: ``(V, H, 2D)`` the GLU layers' weights (value half, then gate half).
        glu_b: ``(V, 2D)`` their biases.
        x1: ``(V, M, 2)`` each variable's value and a one, ``[x, 1]``.
        skip: ``(V, 2, D)`` the residual embedding ``[skip_w; skip_b]``.
        weight: ``(V, D)`` per-variable layer-norm scales.
        bias: ``(V, D)`` per-variable layer-norm offsets.
        w: ``(V, M)`` mixing (selection) weights, variable-major.
        size: ``D`` as a Python int (a traced shape would enter an exported graph).

    Returns:
        ``(M, D)`` the selected embedding. With gradients the GLU layer's two halves are two
        products and the fused :class:`GluNormMix` runs; without (or while tracing for
        export) the plain ops.
    """
    inputs = (hidden, glu_w, glu_b, x1, skip, weight, bias, w)
    grads = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    if not grads or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return glu_norm_mix_reference(*inputs, size=size)
    value = torch.baddbmm(glu_b[:, None, :size], hidden, glu_w[..., :size])  # (V, M, D)
    gate = torch.baddbmm(glu_b[:, None, size:], hidden, glu_w[..., size:])  # (V, M, D)
    return GluNormMix.apply(value, gate, x1, skip, weight, bias, w)
