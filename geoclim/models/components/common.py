"""Shape helpers shared by the networks: folding space into the batch and back.

Point models (LSTM, TFT) run on every cell independently: ``(B, T, C, H, W)`` is folded to
``(B * H * W, T, C)``, so a point model handles point batches (``H = W = 1``) and spatial
batches (patches or whole grids) alike.
"""

from __future__ import annotations

from torch import Tensor, nn


def fold_space(x: Tensor) -> Tensor:
    """``(B, T, C, H, W)`` -> ``(B * H * W, T, C)``."""
    b, t, c, h, w = x.shape
    return x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)


def fold_static(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B * H * W, C)``."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b * h * w, c)


def unfold_space(x: Tensor, b: int, h: int, w: int) -> Tensor:
    """``(B * H * W, T, *F)`` -> ``(B, T, *F, H, W)`` (inverse of :func:`fold_space`)."""
    feature_dims = x.shape[2:]
    x = x.reshape(b, h, w, x.shape[1], *feature_dims)  # (B, H, W, T, *F)
    order = (0, 3, *range(4, 4 + len(feature_dims)), 1, 2)
    return x.permute(*order)


def unfold_static(x: Tensor, b: int, h: int, w: int) -> Tensor:
    """``(B * H * W, C)`` -> ``(B, C, H, W)`` (inverse of :func:`fold_static`)."""
    return x.reshape(b, h, w, x.shape[-1]).permute(0, 3, 1, 2)


def output_head(hidden: int, c_out: int, n_quantiles: int) -> nn.Linear:
    """Linear map from ``hidden`` features to ``C_out * max(Q, 1)`` outputs."""
    return nn.Linear(hidden, c_out * max(n_quantiles, 1))


def split_outputs(y: Tensor, c_out: int, n_quantiles: int) -> Tensor:
    """``(N, T, C_out * Q)`` -> ``(N, T, C_out[, Q])`` (no quantile dim when ``Q == 0``)."""
    n, t, _ = y.shape
    return y.reshape(n, t, c_out, n_quantiles) if n_quantiles else y.reshape(n, t, c_out)


def add_persistence(prediction: Tensor, past: Tensor, c_out: int) -> Tensor:
    """Add the last observed targets to a prediction, so the network learns the change.

    Args:
        prediction: ``(B, T_out, C_out[, Q], H, W)``.
        past: ``(B, T_in, C_in, H, W)`` with the targets as its first ``C_out`` channels.
        c_out: number of targets ``C_out``.

    Returns:
        ``prediction`` plus ``past[:, -1, :C_out]`` broadcast over leads (and quantiles).

    """
    last = past[:, -1:, :c_out]  # (B, 1, C_out, H, W)
    if prediction.dim() == 6:
        last = last.unsqueeze(3)  # (B, 1, C_out, 1, H, W)
    return prediction + last
