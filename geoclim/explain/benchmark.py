"""An attribution benchmark with exact ground truth (Mamalakis, Ebert-Uphoff & Barnes 2022).

"Neural network attribution methods for problems in geoscience: a novel synthetic benchmark
dataset" (Environmental Data Science 1, e8): the target is a sum of known functions of each
input, ``y = sum_i C_i(x_i)``, with random piecewise-linear ``C_i`` through the origin. Every
input's contribution is then known exactly: ``C_i(x_i)`` against a zero baseline, the
answer an attribution method with that baseline should give. Here the inputs are the cells
``(step, variable)`` of ``Batch.past`` in normalised space (so zero is the climatology
baseline), and each lead has its own functions.

:func:`make_benchmark` draws the inputs, targets and true attributions;
:func:`fit_benchmark_net` trains a small network in the Batch interface (a flat MLP, as in
the paper) in seconds; :func:`map_correlation` scores an attribution map against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from geoclim.explain.layout import InputLayout


@dataclass
class Benchmark:
    """Inputs, targets and the exact attributions of the additive benchmark.

    Attributes:
        past: ``(N, T_in, C, 1, 1)`` float32 standard-normal inputs.
        target: ``(N, L, 1, 1, 1)`` float32, ``y_k = sum_i C_ki(x_i)``.
        truth: ``(N, L, T_in, C)`` float32, the true contribution ``C_ki(x_i)`` of each input.
        knots: ``(K,)`` breakpoints shared by all functions (0 among them).
        values: ``(L, T_in, C, K)`` function values at the knots (0 at the knot 0).

    """

    past: np.ndarray
    target: np.ndarray
    truth: np.ndarray
    knots: np.ndarray
    values: np.ndarray

    def layout(self) -> InputLayout:
        """The benchmark's input layout (variables ``x0, x1, ...``; no known or static)."""
        _, t_in, c = self.past.shape[:3]
        names = tuple(f"x{i}" for i in range(c))
        return InputLayout(names, (), (), t_in, self.target.shape[1])

    def batch(self, rows: slice | np.ndarray = slice(None)) -> dict[str, Tensor]:
        """A Batch of the selected samples (empty known-future and static fields)."""
        past = torch.from_numpy(self.past[rows])
        n, horizon = past.shape[0], self.target.shape[1]
        zeros = torch.zeros(n, dtype=torch.int64)
        return {
            "past": past,
            "known_future": torch.zeros(n, horizon, 0, 1, 1),
            "static": torch.zeros(n, 0, 1, 1),
            "target": torch.from_numpy(self.target[rows]),
            "target_mask": torch.ones(n, horizon, 1, 1, 1),
            "time_idx": zeros,
            "lat_idx": zeros,
            "lon_idx": zeros,
        }


def make_benchmark(
    n: int = 4000,
    input_steps: int = 6,
    channels: int = 3,
    horizon: int = 2,
    n_knots: int = 7,
    seed: int = 0,
) -> Benchmark:
    """Draw the additive benchmark.

    Args:
        n: samples.
        input_steps: ``T_in`` input steps.
        channels: input variables.
        horizon: leads, each with its own functions.
        n_knots: breakpoints of the piecewise-linear functions on ``[-3, 3]`` (odd, so
            that 0 is one of them).
        seed: random seed.

    """
    rng = np.random.default_rng(seed)
    knots = np.linspace(-3.0, 3.0, n_knots | 1)
    zero = knots.size // 2
    slopes = rng.normal(size=(horizon, input_steps, channels, knots.size - 1))
    steps = slopes * np.diff(knots)
    values = np.concatenate([np.zeros((*steps.shape[:3], 1)), np.cumsum(steps, -1)], -1)
    values -= values[..., zero : zero + 1]  # through the origin: C(0) = 0
    past = rng.normal(size=(n, input_steps, channels)).astype(np.float32)
    truth = np.empty((n, horizon, input_steps, channels), np.float32)
    for k in range(horizon):
        for i in range(input_steps):
            for c in range(channels):
                truth[:, k, i, c] = np.interp(past[:, i, c], knots, values[k, i, c])
    target = truth.sum((2, 3))[:, :, None, None, None]
    return Benchmark(past[..., None, None], target.astype(np.float32), truth, knots, values)


class FlatMLP(nn.Module):
    """A fully connected network in the Batch interface: flattened past -> every lead.

    Args:
        input_steps: ``T_in``.
        c_past: past channels.
        horizon: leads ``T_out``.
        hidden: hidden width.

    """

    def __init__(self, input_steps: int, c_past: int, horizon: int, hidden: int = 128):
        super().__init__()
        self.horizon = horizon
        self.body = nn.Sequential(
            nn.Linear(input_steps * c_past, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, horizon),
        )

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``past (B, T_in, C, 1, 1)`` -> ``{"prediction": (B, T_out, 1, 1, 1)}``."""
        x = batch["past"].flatten(1)  # (B, T_in * C)
        y = self.body(x)  # (B, T_out)
        return {"prediction": y[:, :, None, None, None]}


def fit_benchmark_net(
    bench: Benchmark, epochs: int = 60, batch_size: int = 128, seed: int = 0
) -> tuple[FlatMLP, float]:
    """Train a :class:`FlatMLP` on the first 80 % of the samples.

    Returns:
        The network (eval mode) and its R^2 on the held-out 20 %.

    """
    torch.manual_seed(seed)
    n = bench.past.shape[0]
    cut = int(0.8 * n)
    _, t_in, c = bench.past.shape[:3]
    net = FlatMLP(t_in, c, bench.target.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    past, target = torch.from_numpy(bench.past[:cut]), torch.from_numpy(bench.target[:cut])
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(cut, generator=gen).split(batch_size):
            loss = ((net({"past": past[rows]})["prediction"] - target[rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    net.eval()
    with torch.no_grad():
        test = bench.batch(slice(cut, None))
        pred = net(test)["prediction"]
        y = test["target"]
        r2 = 1.0 - float(((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    return net, r2


def map_correlation(attribution: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pearson correlation of each sample's attribution map with its true map.

    Args:
        attribution: ``(N, ...)`` maps.
        truth: ``(N, ...)`` maps of the same shape.

    Returns:
        ``(N,)`` correlations (NaN where a map is constant).

    """
    a = attribution.reshape(attribution.shape[0], -1).astype(np.float64)
    b = truth.reshape(truth.shape[0], -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
