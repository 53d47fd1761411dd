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

from geoclim.data.drift import Thresholds, bin_fractions, psi
from geoclim.errors import DataError
from geoclim.export.metadata import ExportMetadata
from geoclim.serving.inputs import Inputs

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
        self._counts = {
            n: np.zeros(len(r["fractions"]), np.float64) for n, r in self.reference.items()
        }
        self._bins = {  # per variable: inner edges and expected fractions, as arrays once
            n: (np.asarray(r["edges"], np.float64), np.asarray(r["fractions"], np.float64))
            for n, r in self.reference.items()
        }
        self._lock = threading.Lock()
        self.horizon = task.horizon

    def values(self, inputs: Inputs, name: str) -> np.ndarray:
        """Finite request values of ``name``: history for past inputs, leads otherwise."""
        last = int(inputs.inits.max())
        rows = slice(0, last + 1) if name in self._past else slice(last + 1, None)
        v = inputs.dynamic[rows, ..., self._channels[name]].ravel()
        return v[np.isfinite(v)]

    def check(self, inputs: Inputs) -> list[str]:
        """Update the running PSI; return warnings (or raise when blocking).

        Raises:
            DataError: with blocking on, naming the drifting variables and their PSI.

        """
        th, warnings = self.thresholds, []
        for name, ref in self.reference.items():
            v = self.values(inputs, name)
            if not v.size:
                continue
            edges, expected = self._bins[name]
            counts = bin_fractions(v, edges) * v.size
            with self._lock:
                keep = max(0.0, 1.0 - v.size / self.window)
                self._counts[name] = self._counts[name] * keep + counts
                total = float(self._counts[name].sum())
                running = psi(expected, self._counts[name] / total)
            if self.gauge is not None:
                self.gauge(name, running)
            outside = float(np.mean((v < ref["min"]) | (v > ref["max"])))
            problems = []
            if total >= self.min_running and running > th.psi:
                problems.append(
                    f"PSI {running:.2f} > {th.psi:g} over the last ~{int(total)} values served"
                )
            if outside > th.out_of_range:
                problems.append(
                    f"{outside:.0%} of values outside the training range "
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
