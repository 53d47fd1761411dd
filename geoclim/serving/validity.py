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
    task: ForecastTask,
    inputs: Inputs,
    max_missing: float,
    *,
    known_past: bool = False,
    plan: ValidityPlan | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which forecasts have enough real inputs, and how many inputs were filled.

    Args:
        task: the model's task.
        inputs: the validated request.
        max_missing: largest filled fraction of a variable's window values.
        known_past: the graph also reads the known inputs at the input steps (the TFT's
            encoder): a known-future variable that is no past input is then checked over
            the input steps too, so it is never filled there unnoticed.
        plan: ``ValidityPlan(task, known_past)`` made once (a served model keeps its own).

    Returns:
        ``valid (N, H, W)`` bool per init and location / cell: at most ``max_missing`` of
        every variable's window values missing and at least one real past value;
        ``filled (N, H, W)`` the number of missing input values filled with the train
        mean (past and known-future windows, static fields).

    Raises:
        DataError: when no forecast is valid, naming the first variable and location.

    """
    plan = plan if plan is not None else ValidityPlan(task, known_past)
    t = inputs.inits
    parts = list(_window_counts(inputs.dynamic, t, plan.t_in, plan.lead))
    if plan.n_static:
        static_miss = (~np.isfinite(inputs.static)).astype(np.int32)
        parts.append(np.broadcast_to(static_miss, (t.size, *static_miss.shape)))
    counts = np.concatenate(parts, axis=-1)[..., plan.sel]  # (N, H, W, K) checked counts
    frac = counts / plan.sizes
    valid = np.asarray((counts[..., : plan.n_past] < plan.t_in).any(axis=-1))  # a real past
    valid &= (frac <= max_missing).all(axis=-1)
    if not valid.any():
        _raise_missing(inputs, frac, plan, max_missing)
    return valid, counts.sum(axis=-1, dtype=np.int64)


class ValidityPlan:
    """The window values :func:`input_validity` checks, as channels of the missing counts.

    The checked groups, in order: the past variables over the input steps, the known-future
    variables over the leads, the known inputs that are no past input over the input steps
    (``known_past``), the static fields. Each is a selection of the concatenated ``(input-
    step counts (C), lead counts (C), static misses (S))`` with its window size; a served
    model makes its plan once.
    """

    def __init__(self, task: ForecastTask, known_past: bool = False):
        c, dyn = len(task.dynamic_variables), task.dynamic_variables
        self.t_in, self.lead, self.n_past = task.input_steps, task.horizon, len(task.past_variables)
        self.n_static = len(task.static_inputs)
        known_only = [v for v in task.future_variables if v not in task.past_variables]
        groups = [  # (names, channels of the concatenated counts, window size)
            (list(task.past_variables), list(range(self.n_past)), self.t_in),
            (
                list(task.future_variables),
                [c + dyn.index(v) for v in task.future_variables],
                self.lead,
            ),
            (known_only if known_past else [], [dyn.index(v) for v in known_only], self.t_in),
            (list(task.static_inputs), [2 * c + i for i in range(self.n_static)], 1),
        ]
        groups = [g for g in groups if g[0]]
        self.sel = np.array([i for _, at, _ in groups for i in at], np.intp)
        self.sizes = np.array([n for names, _, n in groups for _ in names], np.float64)
        ends = np.cumsum([len(names) for names, _, _ in groups]).tolist()
        self.groups = [  # (names, their slice of the checked channels)
            (names, slice(stop - len(names), stop))
            for (names, _, _), stop in zip(groups, ends, strict=True)
        ]


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
        inputs = miss[:t_in].sum(axis=0, dtype=np.int32)
        leads = miss[t_in:].sum(axis=0, dtype=np.int32)
        return inputs[None], leads[None]
    miss = ~np.isfinite(dynamic)
    csum = np.concatenate(
        [np.zeros_like(miss[:1], np.int32), np.cumsum(miss, axis=0, dtype=np.int32)]
    )
    return csum[t + 1] - csum[t + 1 - t_in], csum[t + 1 + lead] - csum[t + 1]


def _raise_missing(
    inputs: Inputs, frac: np.ndarray, plan: ValidityPlan, max_missing: float
) -> None:
    t = inputs.inits
    for labels, at in plan.groups:
        bad = np.argwhere(frac[..., at] > min(max_missing, 1 - 1e-9))
        if bad.size:
            i, yy, xx, c = bad[0]
            where = (
                f"station {inputs.station[yy]!r}"
                if inputs.layout == "station"
                else f"latitude {inputs.latitude[yy]:.4f}, longitude {inputs.longitude[xx]:.4f}"
            )
            raise DataError(
                f"no forecast can be made: e.g. variable {labels[c]!r} at {where}, init "
                f"{pd.Timestamp(inputs.times[t[i]])}: {frac[i, yy, xx, at][c]:.0%} of its values "
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
