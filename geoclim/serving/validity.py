"""Which forecasts rest on enough real inputs: the validity mask and filled-input counts.

A location (station, or grid cell) of one init time is *valid* when at most ``max_missing``
of every input variable's window values are missing (past and known-future windows, static
fields) and at least one real past value exists. Missing values of valid locations are
filled with the train mean (as in training); invalid locations are masked (NaN forecast,
``forecast_valid`` False), never filled and presented as forecasts. A request with no valid
location is an error naming the first variable and location at fault.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data.task import ForecastTask
from geoclim.errors import DataError
from geoclim.serving.inputs import Inputs
from geoclim.types import INIT_TIME, LATITUDE, LONGITUDE, STATION


def input_validity(
    task: ForecastTask, inputs: Inputs, max_missing: float, *, known_past: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Which forecasts have enough real inputs, and how many inputs were filled.

    Args:
        task: the model's task.
        inputs: the validated request.
        max_missing: largest filled fraction of a variable's window values.
        known_past: the graph also reads the known inputs at the input steps (the TFT's
            encoder): a known-future variable that is no past input is then checked over
            the input steps too, so it is never filled there unnoticed.

    Returns:
        ``valid (N, H, W)`` bool per init and location / cell: at most ``max_missing`` of
        every variable's window values missing and at least one real past value;
        ``filled (N, H, W)`` the number of missing input values filled with the train
        mean (past and known-future windows, static fields).

    Raises:
        DataError: when no forecast is valid, naming the first variable and location.

    """
    t = inputs.inits
    if t.size == 1:  # one init (point requests): one pass over its window
        window = _window_plan(task, known_past)
        found = window.validity(inputs, max_missing)
        if found is not None:
            return found
    t_in, lead, n_past = task.input_steps, task.horizon, len(task.past_variables)
    inputs_missing, leads_missing = _window_counts(inputs.dynamic, t, t_in, lead)
    past = inputs_missing[..., :n_past]  # (N, H, W, C_past) counts
    counts, sizes, names = [past], [t_in], [list(task.past_variables)]
    fut = [task.dynamic_variables.index(v) for v in task.future_variables]
    if fut:
        counts.append(leads_missing[..., fut])
        sizes.append(lead)
        names.append(list(task.future_variables))
    known_only = [v for v in task.future_variables if v not in task.past_variables]
    if known_past and known_only:
        at = [task.dynamic_variables.index(v) for v in known_only]
        counts.append(inputs_missing[..., at])
        sizes.append(t_in)
        names.append(known_only)
    if task.static_inputs:
        static_miss = (~np.isfinite(inputs.static)).astype(np.int32)
        counts.append(np.broadcast_to(static_miss, (t.size, *inputs.static.shape)))
        sizes.append(1)
        names.append(list(task.static_inputs))
    fracs = [c / n for c, n in zip(counts, sizes, strict=True)]
    valid = np.asarray((past < t_in).any(axis=-1))  # some real past value
    for frac in fracs:
        valid &= (frac <= max_missing).all(axis=-1)
    filled = sum(c.sum(axis=-1) for c in counts)
    if not valid.any():
        _raise_missing(inputs, fracs, names, max_missing)
    return valid, np.asarray(filled, dtype=np.int64)


class _WindowPlan:
    """What :func:`input_validity` checks of one init, per task, found once.

    The counted groups of :func:`input_validity` (past windows, known-future leads, known
    inputs at the input steps, static fields) as one channel selection ``sel`` of the
    concatenated ``(input-step counts, lead counts, static misses)`` and each selected
    channel's window size: the fractions are the same float64 divisions, the mask the same
    comparisons and the filled counts the same integer sums as group by group.
    """

    def __init__(self, task: ForecastTask, known_past: bool):
        c = len(task.dynamic_variables)
        self.t_in, self.lead, self.n_past = task.input_steps, task.horizon, len(task.past_variables)
        sel = list(range(self.n_past))
        sizes = [self.t_in] * self.n_past
        fut = [task.dynamic_variables.index(v) for v in task.future_variables]
        sel += [c + i for i in fut]
        sizes += [self.lead] * len(fut)
        known_only = [v for v in task.future_variables if v not in task.past_variables]
        if known_past and known_only:
            at = [task.dynamic_variables.index(v) for v in known_only]
            sel += at
            sizes += [self.t_in] * len(at)
        self.n_static = len(task.static_inputs)
        sel += [2 * c + i for i in range(self.n_static)]
        sizes += [1] * self.n_static
        self.sel = np.array(sel, np.intp)
        self.sizes = np.array(sizes, np.float64)
        self.split = [0, self.t_in]  # reduceat: the input steps, then the leads

    def validity(self, inputs: Inputs, max_missing: float) -> tuple[np.ndarray, np.ndarray] | None:
        """``(valid, filled)`` of a one-init request, or ``None``: the generic path answers.

        ``None`` when the window leaves the request's axis, or when nothing is valid (the
        generic path then names the cause).
        """
        i, dynamic = int(inputs.inits[0]), inputs.dynamic
        first, stop = i + 1 - self.t_in, i + 1 + self.lead
        if first < 0 or stop > dynamic.shape[0]:
            return None
        miss = ~np.isfinite(dynamic[first:stop])  # (T_in + L, H, W, C)
        # (2, H, W, C): missing values over the input steps and over the leads
        both = np.add.reduceat(miss.view(np.uint8), self.split, axis=0, dtype=np.int32)
        parts = [both[0], both[1]]
        if self.n_static:
            parts.append((~np.isfinite(inputs.static)).astype(np.int32))
        counts = np.concatenate(parts, axis=-1)[..., self.sel]  # (H, W, K)
        valid = np.asarray((both[0, ..., : self.n_past] < self.t_in).any(axis=-1))
        valid &= (counts / self.sizes <= max_missing).all(axis=-1)
        if not valid.any():
            return None
        return valid[None], counts.sum(axis=-1, dtype=np.int64)[None]


_WINDOW_PLANS: dict[tuple[int, bool], tuple[ForecastTask, _WindowPlan]] = {}
"""``(id(task), known_past) -> (task, plan)`` of the served tasks (the task kept: its id
stays its own while cached)."""


def _window_plan(task: ForecastTask, known_past: bool) -> _WindowPlan:
    key = (id(task), known_past)
    entry = _WINDOW_PLANS.get(key)
    if entry is None or entry[0] is not task:
        if len(_WINDOW_PLANS) >= 64:
            _WINDOW_PLANS.clear()
        entry = _WINDOW_PLANS[key] = (task, _WindowPlan(task, known_past))
    return entry[1]


def _window_counts(
    dynamic: np.ndarray, t: np.ndarray, t_in: int, lead: int
) -> tuple[np.ndarray, np.ndarray]:
    """Missing values per channel in each init's input steps and in its leads.

    Args:
        dynamic: ``(T, H, W, C)`` request values, NaN where missing.
        t: ``(N,)`` init positions.
        t_in: input steps (``t - t_in + 1 .. t``).
        lead: lead steps (``t + 1 .. t + lead``).

    Returns:
        ``(N, H, W, C)`` int32 counts over the input steps and over the leads. One init (a
        point request) sums its two windows; several take differences of one running count.
    """
    if t.size == 1 and 0 <= int(t[0]) + 1 - t_in and int(t[0]) + lead < dynamic.shape[0]:
        i = int(t[0])
        miss = ~np.isfinite(dynamic[i + 1 - t_in : i + 1 + lead])  # (T_in + L, H, W, C)
        inputs = np.count_nonzero(miss[:t_in], axis=0).astype(np.int32)
        leads = np.count_nonzero(miss[t_in:], axis=0).astype(np.int32)
        return inputs[None], leads[None]
    miss = ~np.isfinite(dynamic)
    csum = np.concatenate(
        [np.zeros_like(miss[:1], np.int32), np.cumsum(miss, axis=0, dtype=np.int32)]
    )
    return csum[t + 1] - csum[t + 1 - t_in], csum[t + 1 + lead] - csum[t + 1]


def _raise_missing(inputs: Inputs, fracs: list, names: list, max_missing: float) -> None:
    t = inputs.inits
    for frac, labels in zip(fracs, names, strict=True):
        bad = np.argwhere(frac > min(max_missing, 1 - 1e-9))
        if bad.size:
            i, yy, xx, c = bad[0]
            where = (
                f"station {inputs.station[yy]!r}"
                if inputs.layout == "station"
                else f"latitude {inputs.latitude[yy]:.4f}, longitude {inputs.longitude[xx]:.4f}"
            )
            raise DataError(
                f"no forecast can be made: e.g. variable {labels[c]!r} at {where}, init "
                f"{pd.Timestamp(inputs.times[t[i]])}: {frac[i, yy, xx, c]:.0%} of its values "
                f"are missing (NaN); the model accepts at most max_missing = "
                f"{max_missing:.0%} per location: fill the gaps or raise max_missing"
            )
    raise DataError("no forecast can be made: every location's inputs are missing (NaN)")


def mask_invalid(
    out: xr.Dataset,
    valid: np.ndarray,
    filled: np.ndarray,
    inputs: Inputs,
    targets: tuple[str, ...],
) -> xr.Dataset:
    """NaN the forecasts made from too few inputs; add ``forecast_valid`` / ``inputs_filled``.

    Args:
        out: assembled forecast, dims ``(init_time, lead_time, <space>[, quantile])``.
        valid: ``(N_init, H, W)`` from :func:`input_validity` (inits in request order).
        filled: ``(N_init, H, W)`` filled input counts.
        inputs: the validated request.
        targets: the forecast variables to mask.

    Returns:
        ``out`` masked, with ``forecast_valid`` and ``inputs_filled`` (``init_time, <space>``).

    """
    space = [STATION] if inputs.layout == "station" else [LATITUDE, LONGITUDE]
    if inputs.layout == "station":
        valid, filled = valid[..., 0], filled[..., 0]
    coords = {INIT_TIME: inputs.times[inputs.inits]} | {d: out[d].values for d in space}
    dims = (INIT_TIME, *space)
    ok = xr.DataArray(valid, coords, dims).reindex({INIT_TIME: out[INIT_TIME]})
    n = xr.DataArray(filled, coords, dims).reindex({INIT_TIME: out[INIT_TIME]})
    out = out.assign({name: out[name].where(ok) for name in targets})
    out["forecast_valid"] = ok.astype(bool).assign_attrs(
        long_name="forecast made from enough real inputs (see max_missing); NaN elsewhere"
    )
    out["inputs_filled"] = n.astype(np.int64).assign_attrs(
        long_name="missing input values filled with the training mean"
    )
    return out.assign_attrs(inputs_filled=int(filled.sum()), masked=int((~valid).sum()))
