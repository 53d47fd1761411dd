"""Input drift in the service: request inputs against the training data's statistics.

The export embeds per-variable reference statistics of the train block
(:func:`geoclim.data.drift.reference_summary`: PSI quantile bins, min, max, missing rate).
:class:`InputDrift` scores the requests' inputs against them with the same PSI as
``geoclim check`` and

* keeps a running PSI per variable over the recent inputs (bin counts decayed so that about
  ``window`` values count) for the Prometheus gauge
  ``geoclim_input_drift_psi{model, variable}`` (:class:`DriftCollector`, read on scrape);
* returns response warnings when more than 1 % of a request's values of a variable lie
  outside the training range, or when the running PSI (once it covers at least
  ``min_running`` values) is above the threshold. A single request's own PSI is not used:
  a 12-hour window of a variable with a daily cycle is far from the whole training
  distribution without anything having drifted;
* refuses such a request (422) only when blocking is configured (``geoclim serve
  --drift-block``).

**Batched binning.** Sorting values into the PSI bins and updating the running counts is
most of the check's cost, and a point request has few values. With ``batch > 1`` a request
only keeps its values (and counts its out-of-range ones, which its own warning needs); the
values are binned every ``batch`` requests, before a large request, and whenever the running
PSI is read (:meth:`InputDrift.running_psi`, so a Prometheus scrape sees every answered
request). The binning replays the requests' updates in order, so the running counts and the
gauge are bit for bit those of binning each request at once; only the running-PSI *warning*
of a request then reflects the state as of the last binning (at most ``batch - 1`` requests
earlier). The service bins in batches of :data:`SERVICE_BATCH`, except when it blocks
drifting requests (each refusal must count the request itself).

numpy only (no scipy in the request path).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from geoclim.data.drift import Thresholds, psi
from geoclim.errors import ConfigError, DataError
from geoclim.export.metadata import ExportMetadata
from geoclim.serving.inputs import Inputs

_BIN_AT_ONCE = 1 << 16
"""Requests with more (value, bin edge) pairs are binned at once, not kept pending."""
SERVICE_BATCH = 16
"""Requests whose values the service bins at once (see the module docstring)."""
GAUGE = "geoclim_input_drift_psi"
_GAUGE_HELP = "Running PSI of request inputs against the training data (per variable)"


class InputDrift:
    """Drift checks of one served model's inputs.

    Args:
        meta: the export metadata (its ``reference`` statistics; none: no checks).
        block: refuse drifting requests (DataError -> 422) instead of warning.
        thresholds: PSI / range / minimum-count thresholds (``geoclim check``'s defaults).
        window: about how many recent values of a variable the running PSI reflects.
        min_running: values the running PSI must cover before it can raise a warning.
        batch: requests whose values are binned at once (1: each request at once; see the
            module docstring).

    """

    def __init__(
        self,
        meta: ExportMetadata,
        *,
        block: bool = False,
        thresholds: Thresholds | None = None,
        window: int = 5000,
        min_running: int = 1000,
        batch: int = 1,
    ):
        if batch < 1:
            raise ConfigError(f"InputDrift batch={batch!r}: expected >= 1")
        task = meta.task
        self.reference = {k: v for k, v in meta.reference.items() if k in task.dynamic_variables}
        self.block, self.batch = block, batch
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
        self._running = np.zeros((len(names), k + 1))  # decayed bin counts
        self._psi = np.zeros(len(names))  # running PSI as of the last binning
        self._total = np.zeros(len(names))  # values the running counts cover (decayed)
        self._seen = np.zeros(len(names), bool)  # variables that ever had a value
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # not binned yet
        self._alerts: tuple[np.ndarray, list[str]] | None = None  # see _psi_problems
        self._row_masks: dict[tuple[int, int], np.ndarray] = {}  # see _rows
        self._edge_rows = [row for row in self._edges]  # (K,) sorted, +inf padded

    def values(self, inputs: Inputs, name: str) -> np.ndarray:
        """Finite request values of ``name``: history for past inputs, leads otherwise."""
        last = int(inputs.inits.max())
        rows = slice(0, last + 1) if name in self._past else slice(last + 1, None)
        v = inputs.dynamic[rows, ..., self._channels[name]].ravel()
        return v[np.isfinite(v)]

    def _request_values(
        self, inputs: Inputs
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The request's values of every variable at once (the rows of :meth:`values`).

        Returns:
            Values ``(M, V)`` (``M`` = time steps x locations), which of them count
            ``(M, V)`` (finite, in the variable's rows), their number ``(V,)`` and how many
            of those lie outside the training range ``(V,)``.
        """
        v = inputs.dynamic[..., self._ch]  # (T, H, W, V)
        v = v.reshape(v.shape[0], -1, v.shape[-1])  # (T, HW, V)
        rows = self._rows(v.shape[0], max(inputs.inits.tolist()))  # (T, 1, V)
        use = np.isfinite(v)
        use &= rows
        use = use.reshape(-1, v.shape[-1])  # (M, V)
        v = v.reshape(use.shape)
        n = use.sum(axis=0)  # (V,) int64, as count_nonzero
        out = v < self._lo
        out |= v > self._hi
        out &= use
        return v, use, n, out.sum(axis=0)

    def _rows(self, steps: int, last: int) -> np.ndarray:
        """``(T, 1, V)``: whether each step's values of a variable count (read-only).

        The history (up to the last init) for past inputs, the leads otherwise; kept per
        ``(T, last)``, since the rows of a service's requests repeat.
        """
        rows = self._row_masks.get((steps, last))
        if rows is None:
            past_rows = np.arange(steps) <= last  # (T,)
            rows = (past_rows[:, None] == self._is_past)[:, None, :]
            rows.flags.writeable = False
            if len(self._row_masks) >= 64:
                self._row_masks.clear()
            self._row_masks[(steps, last)] = rows
        return rows

    def _bin_counts(self, v: np.ndarray, use: np.ndarray, request: np.ndarray, n: int) -> Any:
        """Bin counts ``(n, V, K + 1)`` of the counted values ``v (M, V)`` of ``n`` requests.

        ``request (M,)`` is the request of each row of ``v``.
        """
        nv, nb = self._running.shape
        # right-closed bins, as bin_fractions' searchsorted(side="left"): the number of
        # edges below v, one search per variable (inf pads the variables with fewer edges;
        # values that do not count, NaN included, land anywhere and are dropped by `use`)
        w = v.astype(np.float64)  # compared with the float64 edges
        idx = np.empty(w.shape, np.intp)  # (M, V)
        for i, edges in enumerate(self._edge_rows):
            idx[:, i] = np.searchsorted(edges, w[:, i], side="left")
        flat = (request[:, None] * nv + np.arange(nv)) * nb + idx  # (M, V) bin of each value
        counts = np.bincount(flat[use], minlength=n * nv * nb)
        return counts.reshape(n, nv, nb).astype(np.float64)

    def _bin(self) -> None:
        """Bin the pending requests and update the running PSI, as one request at a time."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        values, uses, ns = zip(*pending, strict=True)
        n = np.stack(ns)  # (N, V)
        request = np.repeat(np.arange(len(values)), [len(x) for x in values])  # (M,)
        v, use = (values[0], uses[0]) if len(values) == 1 else map(np.concatenate, (values, uses))
        counts = self._bin_counts(v, use, request, len(values))  # (N, V, K + 1)
        keep = np.maximum(0.0, 1.0 - n / self.window)[..., None]  # 1 where nothing was seen
        running = self._running
        for j in range(len(values)):  # in order: the same float operations per request
            running = running * keep[j] + counts[j]
        self._running = running
        self._total = running.sum(axis=1)  # (V,)
        actual = running / np.maximum(self._total, 1e-300)[:, None]
        self._psi = psi(self._expected, actual, axis=1)
        self._seen |= (n > 0).any(axis=0)
        self._alerts = None

    def running_psi(self) -> dict[str, float]:
        """The running PSI of every variable that had values, every request binned."""
        with self._lock:
            self._bin()
            seen, running = self._seen.tolist(), self._psi.tolist()
        return {name: running[i] for i, name in enumerate(self._names) if seen[i]}

    def _psi_problems(self) -> tuple[np.ndarray, list[str]]:
        """Variables whose running PSI warns ``(V,)``, and the warning of each for it alone.

        Both depend on the running state only, so they are formed once per binning.
        """
        if self._alerts is None:
            th = self.thresholds
            warn = (self._total >= self.min_running) & (self._psi > th.psi)
            running, total = self._psi.tolist(), self._total.tolist()  # Python floats
            texts = [
                f"{_lead(name)}PSI {running[i]:.2f} > {th.psi:g} over the last "
                f"~{int(total[i])} values served"
                if warn[i]
                else ""
                for i, name in enumerate(self._names)
            ]
            self._alerts = (warn, texts)
        return self._alerts

    def check(self, inputs: Inputs) -> list[str]:
        """Count the request's values; return warnings (or raise when blocking).

        Raises:
            DataError: with blocking on, naming the drifting variables and their PSI.

        """
        if not self._names:
            return []
        v, use, n, outside = self._request_values(inputs)
        with self._lock:
            self._pending.append((v, use, n))
            large = v.size * self._edges.shape[1] > _BIN_AT_ONCE
            if large or len(self._pending) >= self.batch:
                self._bin()
            by_psi, psi_texts = self._psi_problems()  # as of the last binning
        # a handful of variables: Python numbers (the same float64 divisions) beat numpy's
        # per-call cost
        limit, psi_flags = self.thresholds.out_of_range, by_psi.tolist()
        frac = [o / max(c, 1) for o, c in zip(outside.tolist(), n.tolist(), strict=True)]
        by_range = [x > limit for x in frac]
        flagged = [i for i, c in enumerate(n.tolist()) if c > 0 and (psi_flags[i] or by_range[i])]
        if not flagged:
            return []
        warnings = []
        for i in flagged:
            if not by_range[i]:  # the running PSI alone: the same words until the next binning
                warnings.append(psi_texts[i])
                continue
            name = self._names[i]
            ref = self.reference[name]
            problem = (
                f"{frac[i]:.0%} of values outside the training range "
                f"[{ref['min']:.4g}, {ref['max']:.4g}]"
            )
            warnings.append(
                f"{psi_texts[i]}, {problem}" if psi_flags[i] else f"{_lead(name)}{problem}"
            )
        if self.block:
            raise DataError(
                "request refused (the service blocks drifting inputs): " + "; ".join(warnings)
            )
        return warnings


def _lead(name: str) -> str:
    """The start of a warning about variable ``name``."""
    return f"input drift in {name!r} against the training data: "


class DriftCollector:
    """The Prometheus gauge ``geoclim_input_drift_psi{model, variable}``, read on scrape.

    Collecting bins every pending request first (:meth:`InputDrift.running_psi`).
    """

    def __init__(self) -> None:
        self.monitors: dict[str, InputDrift] = {}

    def describe(self) -> list[Any]:  # noqa: D102 - registered names, without collecting
        from prometheus_client.core import GaugeMetricFamily

        return [GaugeMetricFamily(GAUGE, _GAUGE_HELP, labels=["model", "variable"])]

    def collect(self) -> Any:  # noqa: D102
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily(GAUGE, _GAUGE_HELP, labels=["model", "variable"])
        for model, monitor in self.monitors.items():
            for variable, value in monitor.running_psi().items():
                gauge.add_metric([model, variable], value)
        yield gauge


def install(models: list, registry, *, block: bool = False) -> None:
    """Give every served model with reference statistics an :class:`InputDrift`.

    Args:
        models: the app's :class:`~geoclim.serving.app.ServedModel` list.
        registry: the app's Prometheus registry (gets ``geoclim_input_drift_psi``).
        block: refuse drifting requests (``geoclim serve --drift-block``); their values
            are then binned request by request.

    """
    collector = DriftCollector()
    for m in models:
        meta = m.forecaster.metadata
        if not meta.reference:
            continue
        monitor = InputDrift(meta, block=block, batch=1 if block else SERVICE_BATCH)
        m.forecaster.drift = collector.monitors[m.name] = monitor
    registry.register(collector)
