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

Categorical (CF flag) inputs reach a network as one-hot channels ``<variable>=<meaning>``
(:mod:`geoclim.data.categorical`). Attributions are reported under the source variable: the
channels of one variable are summed into its ``input_variable`` entry (for gradient methods,
whose completeness then still holds) or, for perturbation methods that move all the channels
of a variable together (one value per group), that group value is taken once
(``reduce="mean"``). The per-category breakdown sits on a second cube with a ``category``
dim named by the flag meanings (``wind_dir=NE``; :meth:`InputLayout.to_category_cube`).

Torch-free (numpy and xarray): the ONNX-side explanations in :mod:`geoclim.serving.explain`
build their Datasets with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from geoclim.data import calendar
from geoclim.types import LEAD_TIME

INPUT_VARIABLE = "input_variable"
LAG = "lag"
SAMPLE = "sample"
CATEGORY = "category"
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
        categories: ``{variable: {meaning: flag value}}`` of the categorical inputs
            (``ForecastTask.categories``): each is ``len(meanings)`` one-hot channels.

    """

    past: tuple[str, ...]
    known: tuple[str, ...]
    static: tuple[str, ...]
    input_steps: int
    horizon: int
    categories: Mapping[str, Mapping[str, int]] = field(default_factory=dict, hash=False)

    @classmethod
    def from_task(cls, task: Any) -> InputLayout:
        """The layout of a :class:`~geoclim.data.task.ForecastTask`."""
        return cls(
            tuple(task.past_variables),
            tuple(task.future_inputs),
            tuple(task.static_inputs),
            int(task.input_steps),
            int(task.horizon),
            dict(getattr(task, "categories", None) or {}),
        )

    def channels(self, names: tuple[str, ...]) -> list[tuple[str, str]]:
        """``(channel, variable)`` of the batch channels of ``names`` (one-hot expanded)."""
        out = []
        for name in names:
            cats = self.categories.get(name)
            out += [(f"{name}={m}", name) for m in cats] if cats else [(name, name)]
        return out

    def field_channels(self, field_name: str) -> list[tuple[str, str]]:
        """``(channel, variable)`` of each channel of the batch field ``field_name``."""
        names = {"past": self.past, "known_future": self.known, "static": self.static}
        return self.channels(names[field_name])

    @property
    def category_channels(self) -> tuple[str, ...]:
        """The one-hot channels ``<variable>=<meaning>``, in :attr:`variables` order."""
        return tuple(
            f"{name}={m}" for name in self.variables for m in self.categories.get(name, {})
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
        reduce: str = "sum",
    ) -> np.ndarray:
        """Put field attributions on the ``(variable, lag)`` cube.

        Args:
            past: ``(N, T_in, C_in, *S)`` (``C_in`` batch channels, one-hot expanded).
            known_future: ``(N, T_out, C_known, *S)``.
            static: ``(N, C_static, *S)``.
            space_ndim: number of trailing space dims ``S`` (0, or 2 for grids).
            reduce: how the one-hot channels of a categorical variable are combined:
                ``"sum"`` (gradient attributions) or ``"mean"`` (perturbation methods that
                give every channel of the group the group's value).

        Returns:
            ``(N, V, T_out + T_in, *S)`` float32 (dims ``sample, input_variable, lag``), NaN
            where the model has no such input.

        """
        rows = {name: i for i, name in enumerate(self.variables)}
        return self._place(past, known_future, static, space_ndim, rows, reduce, by="variable")

    def to_category_cube(
        self,
        past: np.ndarray,
        known_future: np.ndarray,
        static: np.ndarray,
        space_ndim: int = 0,
    ) -> np.ndarray:
        """The one-hot channels alone, on ``(N, K, lag, *S)`` (``category_channels`` order).

        Arguments as for :meth:`to_cube`; each category channel keeps its own value.
        """
        rows = {name: i for i, name in enumerate(self.category_channels)}
        return self._place(past, known_future, static, space_ndim, rows, "sum", by="channel")

    def _place(self, past, known_future, static, space_ndim, rows, reduce, *, by):
        n = past.shape[0]
        space = past.shape[past.ndim - space_ndim :] if space_ndim else ()
        cube = np.full((n, len(rows), self.lags.size, *space), np.nan, np.float32)
        lag0 = self.horizon  # position of lag 0 on the lag axis
        arrays = {"past": past, "known_future": known_future, "static": static}
        for name, a in arrays.items():
            axis = 1 if name == "static" else 2
            groups: dict[str, list[int]] = {}
            for c, (channel, variable) in enumerate(self.field_channels(name)):
                key = variable if by == "variable" else channel
                if key in rows:
                    groups.setdefault(key, []).append(c)
            for key, idx in groups.items():
                v = a.take(idx, axis=axis)
                v = v.mean(axis) if reduce == "mean" else v.sum(axis)
                r = rows[key]
                if name == "past":  # step i has lag T_in - 1 - i: positions lag0 + T_in - 1 .. lag0
                    cube[:, r, lag0 : lag0 + self.input_steps] = np.flip(v, axis=1)
                elif name == "known_future":  # lead k (index k - 1) has lag -k: lag0 - k
                    cube[:, r, :lag0] = np.flip(v, axis=1)
                else:
                    cube[:, r, lag0] = v
        return cube

    def to_fields(self, cube: np.ndarray) -> dict[str, np.ndarray]:
        """Inverse of :meth:`to_cube` for ``(N, V, L, *S)``: the three field arrays.

        A categorical variable's value goes to each of its one-hot channels (the inverse of
        ``reduce="mean"``).
        """
        col = {name: i for i, name in enumerate(self.variables)}
        lag0 = self.horizon
        n, rest = cube.shape[0], cube.shape[3:]
        past = [
            np.flip(cube[:, col[v], lag0 : lag0 + self.input_steps], 1)
            for _, v in self.field_channels("past")
        ]
        known = [np.flip(cube[:, col[v], :lag0], 1) for _, v in self.field_channels("known_future")]
        static = [cube[:, col[v], lag0] for _, v in self.field_channels("static")]
        return {
            "past": np.stack(past, 2),
            "known_future": np.stack(known, 2)
            if known
            else np.zeros((n, self.horizon, 0, *rest), cube.dtype),
            "static": np.stack(static, 1) if static else np.zeros((n, 0, *rest), cube.dtype),
        }

    def check_category_baseline(self, modes: Mapping[str, str] | None) -> dict[str, str]:
        """``{variable: meaning}`` of a categorical baseline, checked against the layout.

        Raises:
            ConfigError: naming the unknown variable or meaning and the valid ones.

        """
        from geoclim.errors import ConfigError

        out = {str(k): str(v) for k, v in dict(modes or {}).items()}
        for name, meaning in out.items():
            if name not in self.categories:
                raise ConfigError(
                    f"category_baseline: {name!r} is not a categorical input; valid are "
                    f"{sorted(self.categories)}"
                )
            if meaning not in self.categories[name]:
                raise ConfigError(
                    f"category_baseline[{name!r}] = {meaning!r} is not a category; valid are "
                    f"{list(self.categories[name])}"
                )
        return out

    def baseline_channels(self, field_name: str, modes: Mapping[str, str]) -> list[int]:
        """Channels of ``field_name`` that are 1 in a categorical baseline ``modes``.

        ``modes`` maps a categorical variable to the meaning its baseline takes (a valid
        one-hot); the variables it omits stay all zeros, the missing-category state.
        """
        wanted = {f"{name}={meaning}" for name, meaning in modes.items()}
        return [
            c for c, (channel, _) in enumerate(self.field_channels(field_name)) if channel in wanted
        ]

    def category_coords(self) -> dict[str, Any]:
        """Coordinates of the ``category`` dim: channel name, variable, meaning, flag value."""
        entries = [
            (f"{name}={m}", name, m, value)
            for name in self.variables
            for m, value in self.categories.get(name, {}).items()
        ]
        names, variables, meanings, values = (list(x) for x in zip(*entries, strict=True))
        return {
            CATEGORY: names,
            "category_variable": (CATEGORY, variables),
            "category_meaning": (CATEGORY, meanings),
            "category_value": (CATEGORY, np.asarray(values, np.int64)),
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
    category_cube: np.ndarray | None = None,
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
        category_cube: ``(N, L_out, K, lag[, *S])`` per-category breakdown of the
            categorical inputs (``layout.category_channels`` order), stored as
            ``category_attribution``; its sum over the categories of a variable is that
            variable's ``attribution``.

    Returns:
        Dataset with ``attribution`` and the coords ``input_variable`` (with ``input_kind``),
        ``lag``, ``lead_time``, ``sample`` (with ``sample_coords``) and the space dims; with
        a ``category_cube``, ``category_attribution`` on ``category`` (coords
        ``category_variable``, ``category_meaning``, ``category_value``).

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
    if category_cube is not None and layout.category_channels:
        coords |= layout.category_coords()
        data["category_attribution"] = (
            (SAMPLE, LEAD_TIME, CATEGORY, LAG, *space),
            np.asarray(category_cube, np.float32),
        )
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
