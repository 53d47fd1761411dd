"""Batch channels <-> ``(input_variable, lag)``: the one layout every attribution shares.

A network reads three fields (:class:`geoclim.types.Batch`); an attribution of each field
element is put on one cube with dims ``(input_variable, lag)``:

* ``past (T_in, C_in)``: variable ``c`` at input step ``i`` has ``lag = T_in - 1 - i``
  (lag 0 is the init time, lag 3 three steps before it);
* ``known_future (T_out, C_known)``: input ``c`` at lead ``k`` (1-based) has ``lag = -k``, the
  valid time of lead ``k``; a variable that is both a past and a known-future input (forecast
  wind, say) is one ``input_variable`` whose past lags are ``>= 0`` and future lags ``< 0``;
* ``static (C_static)``: no time; stored at ``lag = 0`` (the ``input_kind`` coordinate says
  ``"static"``).

Entries the model has no input for (a past-only variable at a negative lag, a static field at
any lag but 0) are NaN, so ``cube.sum("lag", skipna=True)`` is the variable's total.

Torch-free (numpy and xarray): the ONNX-side explanations in :mod:`geoclim.serving.explain`
build their Datasets with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from geoclim.data import calendar
from geoclim.types import LEAD_TIME

INPUT_VARIABLE = "input_variable"
LAG = "lag"
SAMPLE = "sample"
FIELDS = ("past", "known_future", "static")
LAG_ATTRS = {
    "long_name": "input time relative to the init time",
    "units": "steps",
    "description": "lag >= 0: steps before the init time (0 = init time); lag -k: the valid "
    "time of lead k (known-future inputs); static inputs are stored at lag 0",
}


@dataclass(frozen=True)
class InputLayout:
    """Names of the batch channels of one task.

    Attributes:
        past: ``Batch.past`` channels (targets first, then past inputs).
        known: ``Batch.known_future`` channels (calendar encodings or forecast variables).
        static: ``Batch.static`` channels.
        input_steps: ``T_in``.
        horizon: ``T_out``.

    """

    past: tuple[str, ...]
    known: tuple[str, ...]
    static: tuple[str, ...]
    input_steps: int
    horizon: int

    @classmethod
    def from_task(cls, task: Any) -> InputLayout:
        """The layout of a :class:`~geoclim.data.task.ForecastTask`."""
        return cls(
            tuple(task.past_variables),
            tuple(task.future_inputs),
            tuple(task.static_inputs),
            int(task.input_steps),
            int(task.horizon),
        )

    @property
    def variables(self) -> tuple[str, ...]:
        """Every input variable once: past, then known-future only, then static."""
        return tuple(dict.fromkeys((*self.past, *self.known, *self.static)))

    @property
    def lags(self) -> np.ndarray:
        """``(T_out + T_in,)`` lags from ``-T_out`` (last lead) to ``T_in - 1`` (oldest input)."""
        return np.arange(-self.horizon, self.input_steps)

    def kinds(self) -> list[str]:
        """``input_kind`` of each variable: past, future, past+future, calendar or static."""
        out = []
        for name in self.variables:
            if name in self.static:
                out.append("static")
            elif name in calendar.FEATURES:
                out.append("calendar")
            elif name in self.past and name in self.known:
                out.append("past+future")
            else:
                out.append("past" if name in self.past else "future")
        return out

    def to_cube(
        self,
        past: np.ndarray,
        known_future: np.ndarray,
        static: np.ndarray,
        space_ndim: int = 0,
    ) -> np.ndarray:
        """Put field attributions on the ``(variable, lag)`` cube.

        Args:
            past: ``(N, T_in, C_in, *S)``.
            known_future: ``(N, T_out, C_known, *S)``.
            static: ``(N, C_static, *S)``.
            space_ndim: number of trailing space dims ``S`` (0, or 2 for grids).

        Returns:
            ``(N, V, T_out + T_in, *S)`` float32 (dims ``sample, input_variable, lag``), NaN
            where the model has no such input.

        """
        n = past.shape[0]
        space = past.shape[past.ndim - space_ndim :] if space_ndim else ()
        names, lags = self.variables, self.lags
        cube = np.full((n, len(names), lags.size, *space), np.nan, np.float32)
        col = {name: i for i, name in enumerate(names)}
        lag0 = self.horizon  # position of lag 0 on the lag axis
        for c, name in enumerate(self.past):
            # past step i has lag T_in - 1 - i -> positions lag0 + T_in - 1 ... lag0
            cube[:, col[name], lag0 : lag0 + self.input_steps] = np.flip(past[:, :, c], axis=1)
        for c, name in enumerate(self.known):
            # lead k (index k - 1) has lag -k -> position lag0 - k
            cube[:, col[name], :lag0] = np.flip(known_future[:, :, c], axis=1)
        for c, name in enumerate(self.static):
            cube[:, col[name], lag0] = static[:, c]
        return cube

    def to_fields(self, cube: np.ndarray) -> dict[str, np.ndarray]:
        """Inverse of :meth:`to_cube` for ``(N, V, L, *S)``: the three field arrays."""
        col = {name: i for i, name in enumerate(self.variables)}
        lag0 = self.horizon
        past = np.stack(
            [np.flip(cube[:, col[n], lag0 : lag0 + self.input_steps], 1) for n in self.past], 2
        )
        known = [np.flip(cube[:, col[n], :lag0], 1) for n in self.known]
        static = [cube[:, col[n], lag0] for n in self.static]
        n, rest = cube.shape[0], cube.shape[3:]
        return {
            "past": past,
            "known_future": np.stack(known, 2)
            if known
            else np.zeros((n, self.horizon, 0, *rest), cube.dtype),
            "static": np.stack(static, 1) if static else np.zeros((n, 0, *rest), cube.dtype),
        }


def attribution_dataset(
    cube: np.ndarray,
    layout: InputLayout,
    lead_time: np.ndarray,
    *,
    sample_coords: Mapping[str, np.ndarray] | None = None,
    space_coords: Mapping[str, np.ndarray] | None = None,
    extra: Mapping[str, tuple[tuple[str, ...], np.ndarray]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Wrap a ``(N, L_out, V, lag[, *S])`` attribution array as the attribution Dataset.

    Args:
        cube: attributions, dims ``(sample, lead_time, input_variable, lag, *space)``.
        layout: the task's input layout (variables, lags).
        lead_time: ``(L_out,)`` timedelta64 lead times explained.
        sample_coords: coordinates along ``sample`` (``init_time``, ``station``...).
        space_coords: input space dims in order, e.g. ``{"latitude": ..., "longitude": ...}``.
        extra: more data variables, ``{name: (dims, values)}``.
        attrs: Dataset attributes (method, baseline, target...).

    Returns:
        Dataset with ``attribution`` and the coords ``input_variable`` (with ``input_kind``),
        ``lag``, ``lead_time``, ``sample`` (with ``sample_coords``) and the space dims.

    """
    space = dict(space_coords or {})
    dims = (SAMPLE, LEAD_TIME, INPUT_VARIABLE, LAG, *space)
    coords: dict[str, Any] = {
        SAMPLE: np.arange(cube.shape[0]),
        LEAD_TIME: np.asarray(lead_time, dtype="timedelta64[ns]"),
        INPUT_VARIABLE: list(layout.variables),
        "input_kind": (INPUT_VARIABLE, layout.kinds()),
        LAG: (LAG, layout.lags, LAG_ATTRS),
        **space,
    }
    for name, values in (sample_coords or {}).items():
        coords[name] = (SAMPLE, np.asarray(values))
    data = {"attribution": (dims, np.asarray(cube, np.float32))}
    data |= {name: (d, np.asarray(v)) for name, (d, v) in (extra or {}).items()}
    return xr.Dataset(data, coords=coords, attrs=dict(attrs or {}))


def importance(ds: xr.Dataset, by: str = "variable") -> xr.DataArray:
    """Mean absolute attribution over samples, per lead.

    Args:
        ds: an attribution Dataset.
        by: ``"variable"`` (summed over lags: ``(lead_time, input_variable)``) or
            ``"lag"`` (``(lead_time, input_variable, lag)``).

    """
    mag = abs(ds["attribution"])
    if SAMPLE in mag.dims:
        mag = mag.mean(SAMPLE)
    space = [d for d in mag.dims if d not in (LEAD_TIME, INPUT_VARIABLE, LAG)]
    if space:
        mag = mag.sum(space)
    return mag.sum(LAG, skipna=True) if by == "variable" and LAG in mag.dims else mag
