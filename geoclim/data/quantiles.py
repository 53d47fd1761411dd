"""The point forecast of a quantile forecast, one definition for loss, metrics and serving.

The point value of a forecast given at increasing levels ``q_1 < ... < q_Q`` is its median:

- ``x_{0.5}`` when 0.5 is one of the levels;
- otherwise the piecewise-linear quantile function at 0.5, between the two levels that
  bracket it: ``x = x_lo + (0.5 - q_lo) / (q_hi - q_lo) * (x_hi - x_lo)``
  (levels ``(0.1, 0.9)`` give the mid-point of the two quantiles);
- when 0.5 lies outside the levels (all below or all above), the level nearest to 0.5.

The rule is held as at most two ``(index, weight)`` pairs so that numpy arrays, torch
tensors and xarray objects apply it the same way, without this module importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from geoclim.errors import ConfigError

ArrayT = TypeVar("ArrayT")
Levels = Sequence[float] | np.ndarray


def median_weights(levels: Levels) -> tuple[tuple[int, float], ...]:
    """``(index, weight)`` pairs whose weighted sum of quantiles is the point forecast.

    Args:
        levels: the quantile levels, strictly increasing, within (0, 1).

    Returns:
        One pair ``((i, 1.0),)`` when a level is 0.5 or 0.5 lies outside the levels, else
        the two bracketing levels ``((lo, 1 - a), (hi, a))`` with ``a = (0.5 - q_lo) /
        (q_hi - q_lo)``.

    Raises:
        ConfigError: no levels, or levels that are not increasing within (0, 1).

    """
    q = np.asarray([float(v) for v in levels], dtype=np.float64)
    if q.size == 0 or np.any((q <= 0) | (q >= 1)) or np.any(np.diff(q) <= 0):
        raise ConfigError(f"quantile levels {q.tolist()} must be increasing and within (0, 1)")
    exact = np.flatnonzero(np.isclose(q, 0.5, rtol=0.0, atol=1e-9))
    if exact.size:
        return ((int(exact[0]), 1.0),)
    hi = int(np.searchsorted(q, 0.5))
    if hi == 0 or hi == q.size:
        return ((0 if hi == 0 else q.size - 1, 1.0),)
    a = float((0.5 - q[hi - 1]) / (q[hi] - q[hi - 1]))
    return ((hi - 1, 1.0 - a), (hi, a))


def point_from_quantiles(values: ArrayT, levels: Levels, axis: int) -> ArrayT:
    """The point forecast of a numpy array or torch tensor holding quantiles on ``axis``.

    Args:
        values: array with the ``Q`` quantiles along ``axis``, e.g. ``(B, T, C, Q, H, W)``.
        levels: the ``Q`` levels (see :func:`median_weights`).
        axis: position of the quantile axis (non-negative).

    Returns:
        ``values`` without ``axis`` (same type), e.g. ``(B, T, C, H, W)``.

    """
    head: tuple[Any, ...] = (slice(None),) * axis
    pairs = median_weights(levels)
    out = values[(*head, pairs[0][0])] * pairs[0][1]  # type: ignore[index]
    for index, weight in pairs[1:]:
        out = out + values[(*head, index)] * weight  # type: ignore[index]
    return out
