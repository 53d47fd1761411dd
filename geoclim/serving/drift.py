"""Input drift in the service: request inputs against the training data's statistics.

The export embeds per-variable reference statistics of the train block
(:func:`geoclim.data.drift.reference_summary`: PSI quantile bins, min, max, missing rate).
:class:`InputDrift` scores each request's inputs against them with the same PSI as
``geoclim check`` and

* keeps a running PSI per variable over the recent inputs (bin counts decayed so that about
  ``window`` values count) for the Prometheus gauge
  ``geoclim_input_drift_psi{model, variable}``;
* returns response warnings when more than 1 % of a request's values of a variable lie
  outside the training range, or when the running PSI (once it covers at least
  ``min_running`` values) is above the threshold. A single request's own PSI is not used:
  a 12-hour window of a variable with a daily cycle is far from the whole training
  distribution without anything having drifted;
* refuses such a request (422) only when blocking is configured (``geoclim serve
  --drift-block``).

numpy only (no scipy in the request path).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from geoclim.data.drift import Thresholds, psi
from geoclim.errors import DataError
from geoclim.export.metadata import ExportMetadata
from geoclim.serving.inputs import Inputs

_BROADCAST_MAX = 1 << 16
"""Requests with at most this many (value, bin edge) pairs bin all values in one comparison."""

Gauge = Callable[[str, float], None]
"""``set(variable, psi)``: where the running PSI goes (a Prometheus gauge in the app)."""


class InputDrift:
    """Drift checks of one served model's inputs.

    Args:
        meta: the export metadata (its ``reference`` statistics; none: no checks).
        gauge: receives the running PSI per variable after each request.
        block: refuse drifting requests (DataError -> 422) instead of warning.
        thresholds: PSI / range / minimum-count thresholds (``geoclim check``'s defaults).
        window: about how many recent values of a variable the running PSI reflects.
        min_running: values the running PSI must cover before it can raise a warning.

    """

    def __init__(
        self,
        meta: ExportMetadata,
        *,
        gauge: Gauge | None = None,
        block: bool = False,
        thresholds: Thresholds | None = None,
        window: int = 5000,
        min_running: int = 1000,
    ):
        task = meta.task
        self.reference = {k: v for k, v in meta.reference.items() if k in task.dynamic_variables}
        self.gauge, self.block = gauge, block
        self.thresholds = thresholds or Thresholds()
        self.window, self.min_running = window, min_running
        self._past = set(task.past_variables)
        self._channels = {n: task.dynamic_variables.index(n) for n in self.reference}
        self._lock = threading.Lock()
        self.horizon = task.horizon
        # Every variable at once: (V,) channels and past flags, (V, K) inner edges padded
        # with +inf (no value lies above one), (V, K + 1) expected fractions padded with 0.
        names = self._names = tuple(self.reference)
        k = max((len(r["edges"]) for r in self.reference.values()), default=0)
        self._ch = np.array([self._channels[n] for n in names], np.intp)
        self._is_past = np.array([n in self._past for n in names], bool)
        self._edges = np.full((len(names), k), np.inf)
        self._expected = np.zeros((len(names), k + 1))
        for i, r in enumerate(self.reference.values()):
            self._edges[i, : len(r["edges"])] = r["edges"]
            self._expected[i, : len(r["fractions"])] = r["fractions"]
        self._lo = np.array([r["min"] for r in self.reference.values()], np.float64)
        self._hi = np.array([r["max"] for r in self.reference.values()], np.float64)
        self._offsets = np.arange(len(names))[:, None] * (k + 1)  # (V, 1) flat bin offsets
        self._running = np.zeros((len(names), k + 1))  # decayed bin counts

    def values(self, inputs: Inputs, name: str) -> np.ndarray:
        """Finite request values of ``name``: history for past inputs, leads otherwise."""
        last = int(inputs.inits.max())
        rows = slice(0, last + 1) if name in self._past else slice(last + 1, None)
        v = inputs.dynamic[rows, ..., self._channels[name]].ravel()
        return v[np.isfinite(v)]

    def _request_counts(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The request's values of every variable at once (the rows of :meth:`values`).

        Returns:
            Bin counts ``(V, K + 1)``, finite values ``(V,)`` and finite values outside the
            training range ``(V,)``.
        """
        v = inputs.dynamic[..., self._ch]  # (T, H, W, V)
        v = v.reshape(v.shape[0], -1, v.shape[-1])  # (T, HW, V)
        past_rows = np.arange(v.shape[0]) <= int(inputs.inits.max())  # (T,)
        rows = past_rows[:, None] == self._is_past  # (T, V): history or leads
        use = np.isfinite(v) & rows[:, None, :]  # (T, HW, V)
        # right-closed bins, as bin_fractions' searchsorted(side="left"): edges below v
        if v.size * self._edges.shape[1] <= _BROADCAST_MAX:  # small (point) requests
            idx = np.count_nonzero(v[..., None] > self._edges, axis=-1)  # via (T, HW, V, K)
        else:  # one pass per edge, no (T, HW, V, K) temporary
            idx = np.zeros(v.shape, np.intp)  # (T, HW, V)
            for edge in self._edges.T:  # (V,): inf pads the variables with fewer edges
                idx += v > edge
        counts = np.bincount((idx + self._offsets[:, 0])[use], minlength=self._running.size)
        counts = counts.reshape(self._running.shape)
        use = use.reshape(-1, use.shape[-1])  # (T * HW, V)
        n = np.count_nonzero(use, axis=0)  # (V,)
        beyond = (v < self._lo) | (v > self._hi)
        outside = np.count_nonzero(use & beyond.reshape(use.shape), axis=0)
        return counts.astype(np.float64), n, outside

    def check(self, inputs: Inputs) -> list[str]:
        """Update the running PSI; return warnings (or raise when blocking).

        Raises:
            DataError: with blocking on, naming the drifting variables and their PSI.

        """
        if not self._names:
            return []
        th, warnings = self.thresholds, []
        counts, n, outside = self._request_counts(inputs)
        seen = n > 0  # variables without a finite value are skipped (state unchanged)
        keep = np.maximum(0.0, 1.0 - n / self.window)[:, None]  # 1 where nothing was seen
        with self._lock:
            self._running = self._running * keep + counts
            total = self._running.sum(axis=1)  # (V,)
            actual = self._running / np.maximum(total, 1e-300)[:, None]
            running = psi(self._expected, actual, axis=1)
        out_frac = (outside / np.maximum(n, 1)).tolist()
        running_, total_ = running.tolist(), total.tolist()  # Python floats in the loop
        for i in np.flatnonzero(seen).tolist():
            name = self._names[i]
            if self.gauge is not None:
                self.gauge(name, running_[i])
            problems = []
            if total_[i] >= self.min_running and running_[i] > th.psi:
                problems.append(
                    f"PSI {running_[i]:.2f} > {th.psi:g} over the last ~{int(total_[i])} "
                    "values served"
                )
            if out_frac[i] > th.out_of_range:
                ref = self.reference[name]
                problems.append(
                    f"{out_frac[i]:.0%} of values outside the training range "
                    f"[{ref['min']:.4g}, {ref['max']:.4g}]"
                )
            if problems:
                warnings.append(
                    f"input drift in {name!r} against the training data: {', '.join(problems)}"
                )
        if warnings and self.block:
            raise DataError(
                "request refused (the service blocks drifting inputs): " + "; ".join(warnings)
            )
        return warnings


def install(models: list, registry, *, block: bool = False) -> None:
    """Give every served model with reference statistics an :class:`InputDrift`.

    Args:
        models: the app's :class:`~geoclim.serving.app.ServedModel` list.
        registry: the app's Prometheus registry (gets ``geoclim_input_drift_psi``).
        block: refuse drifting requests (``geoclim serve --drift-block``).

    """
    from prometheus_client import Gauge as PromGauge

    gauge = PromGauge(
        "geoclim_input_drift_psi",
        "Running PSI of request inputs against the training data (per variable)",
        ["model", "variable"],
        registry=registry,
    )
    for m in models:
        meta = m.forecaster.metadata
        if not meta.reference:
            continue

        children: dict[str, Any] = {}  # the labelled gauges, looked up once per variable

        def set_psi(variable: str, value: float, _name: str = m.name, _kids=children) -> None:
            child = _kids.get(variable)
            if child is None:
                child = _kids[variable] = gauge.labels(model=_name, variable=variable)
            child.set(value)

        m.forecaster.drift = InputDrift(meta, gauge=set_psi, block=block)
