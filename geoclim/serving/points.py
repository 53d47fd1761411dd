"""One pass from a point request's arrays to the graph's ``(B, T, C, 1, 1)`` inputs.

The generic path (:meth:`Forecaster.window_arrays` + :func:`geoclim.data.windows.gather`)
normalises the whole request axis variable by variable, builds the training datamodule's
arrays and gathers windows by flat row numbers: it serves grids, patches, several init
times and netCDF histories. A JSON point request is far simpler: one init time, ``S``
stations and ``W = 1``. :class:`PointPlan` holds what such a request needs of one model,
found once at load (the normaliser's constants per channel, the channel order of the known
inputs); :func:`point_batch` then cuts the one window ``t - T_in + 1 .. t + L`` out of the
request, normalises it with a few array operations over all channels at once and writes the
graph's inputs in their layout.

The result is exactly the generic path's (the same float32 operations in the same order:
``tests/serving/test_serving_points.py`` compares both on generated requests). Models the
plan does not cover (trees, categorical inputs, patches, graph inputs other than the
windows, the static fields and the domain positions) get no plan and take the generic path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from geoclim.data.calendar import calendar_on_axis
from geoclim.data.normalize import ChannelEncoder
from geoclim.export.metadata import ExportMetadata
from geoclim.serving.inputs import Inputs

POINT_INPUTS = frozenset({"past", "known_future", "known_past", "static", "lat_idx", "lon_idx"})
"""Graph inputs a :class:`PointPlan` can build; a graph reading others takes the generic path."""


@dataclass(frozen=True)
class PointPlan:
    """What the point batches of one model need, found once at load.

    Attributes:
        inputs: the graph's input names.
        t_in: input steps; lead: forecast steps; n_past: past channels.
        dynamic: normaliser constants of the dynamic channels (``task.dynamic_variables``).
        static: normaliser constants of the static channels (``task.static_inputs``).
        cal_names: the calendar encodings among the known inputs.
        cal_at, cal_from: known-input channels taken from calendar columns ``cal_from``.
        dyn_at, dyn_from: known-input channels taken from dynamic channels ``dyn_from``.
        cal_cut, dyn_cut: ``(at, from)`` of each as slices where the positions follow each
            other (derived).

    """

    inputs: tuple[str, ...]
    t_in: int
    lead: int
    n_past: int
    dynamic: ChannelEncoder
    static: ChannelEncoder
    cal_names: tuple[str, ...]
    cal_at: np.ndarray
    cal_from: np.ndarray
    dyn_at: np.ndarray
    dyn_from: np.ndarray
    cal_cut: tuple = field(init=False, repr=False, compare=False)
    dyn_cut: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cal_cut", (_cut(self.cal_at), _cut(self.cal_from)))
        object.__setattr__(self, "dyn_cut", (_cut(self.dyn_at), _cut(self.dyn_from)))

    @classmethod
    def build(
        cls,
        meta: ExportMetadata,
        cal_names: tuple[str, ...],
        known_sources: tuple[tuple[str, int], ...],
    ) -> PointPlan | None:
        """The plan of a model, or ``None`` when its requests need the generic path.

        Args:
            meta: the export metadata.
            cal_names: the calendar encodings among the known inputs (adapter order).
            known_sources: per known channel ``("calendar", column)`` or ``("dynamic", c)``.

        """
        task = meta.task
        if (
            meta.window.patch != 1
            or meta.io.kind != "net"
            or not set(meta.io.inputs) <= POINT_INPUTS
            or set(task.categories) & {*task.dynamic_variables, *task.static_inputs}
            or not {*task.dynamic_variables, *task.static_inputs} <= set(meta.normalizer.stats)
        ):
            return None
        cal = [(k, c) for k, (src, c) in enumerate(known_sources) if src == "calendar"]
        dyn = [(k, c) for k, (src, c) in enumerate(known_sources) if src == "dynamic"]

        def ints(values: list[int]) -> np.ndarray:
            return np.array(values, np.intp)

        return cls(
            inputs=tuple(meta.io.inputs),
            t_in=task.input_steps,
            lead=task.horizon,
            n_past=len(task.past_channels),
            dynamic=meta.normalizer.channels(task.dynamic_variables),
            static=meta.normalizer.channels(task.static_inputs),
            cal_names=cal_names,
            cal_at=ints([k for k, _ in cal]),
            cal_from=ints([c for _, c in cal]),
            dyn_at=ints([k for k, _ in dyn]),
            dyn_from=ints([c for _, c in dyn]),
        )

    def covers(self, inputs: Inputs) -> bool:
        """Whether :func:`point_batch` serves ``inputs``: points, one init, window inside."""
        if inputs.layout != "station" or inputs.inits.size != 1 or inputs.dynamic.shape[2] != 1:
            return False
        located = {"lat_idx": inputs.domain_rows, "lon_idx": inputs.domain_cols}
        if any(located[n] is None for n in located if n in self.inputs):
            return False  # the generic path places unlocated points itself
        t = int(inputs.inits[0])
        return t - self.t_in + 1 >= 0 and t + self.lead < inputs.dynamic.shape[0]


def point_batch(plan: PointPlan, inputs: Inputs) -> dict[str, np.ndarray]:
    """The graph's inputs for the ``S`` points of a one-init request (see :meth:`covers`).

    Returns:
        ``{name: array}`` for each graph input: ``past (S, T_in, C_in, 1, 1)``,
        ``known_future (S, L, C_known, 1, 1)``, ``known_past (S, T_in, C_known, 1, 1)``,
        ``static (S, C_static, 1, 1)`` (missing values 0, the train mean), ``lat_idx`` /
        ``lon_idx`` ``(S,)`` int64; the same arrays as ``gather`` gives for the samples.

    """
    t, t_in = int(inputs.inits[0]), plan.t_in
    window = inputs.dynamic[t - t_in + 1 : t + 1 + plan.lead, :, 0]  # (T_in + L, S, C_dyn)
    norm = plan.dynamic.encode(window).transpose(1, 0, 2)  # (S, T_in + L, C_dyn), a view
    static = plan.static.encode(inputs.static[:, 0])  # (S, C_static)
    for a in (norm, static):
        finite = np.isfinite(a)
        if not finite.all():
            np.copyto(a, 0.0, where=~finite)  # missing (NaN, +-inf): 0, the train mean
    batch: dict[str, np.ndarray] = {}
    for name in plan.inputs:
        if name == "past":
            batch[name] = np.ascontiguousarray(norm[:, :t_in, : plan.n_past])
        elif name == "known_future":
            batch[name] = _known(plan, inputs, norm[:, t_in:], t + 1)
        elif name == "known_past":
            batch[name] = _known(plan, inputs, norm[:, :t_in], t - t_in + 1)
        elif name == "static":
            batch[name] = static
        else:  # lat_idx / lon_idx: the points' positions on the training domain
            where = inputs.domain_rows if name == "lat_idx" else inputs.domain_cols
            batch[name] = np.asarray(where)[:, 0].astype(np.int64)  # located: see covers
    return {
        k: v[..., None, None] if k in ("past", "known_future", "known_past", "static") else v
        for k, v in batch.items()
    }


def _known(plan: PointPlan, inputs: Inputs, window: np.ndarray, first: int) -> np.ndarray:
    """``(S, n, C_known)`` known channels over ``n`` steps from position ``first``.

    Args:
        plan: the model's plan.
        inputs: the request (its time axis gives the calendar encodings).
        window: ``(S, n, C_dyn)`` normalised dynamic channels over the same steps.
        first: position of the first step on the request's axis.
    """
    s, n, _ = window.shape
    out = np.empty((s, n, plan.cal_at.size + plan.dyn_at.size), np.float32)
    if plan.cal_at.size:
        cal = calendar_on_axis(inputs.times, plan.cal_names)  # (T, K_cal), memoised
        out[:, :, plan.cal_cut[0]] = cal[first : first + n][:, plan.cal_cut[1]]
    if plan.dyn_at.size:
        out[:, :, plan.dyn_cut[0]] = window[:, :, plan.dyn_cut[1]]
    return out


def _cut(index: np.ndarray) -> slice | np.ndarray:
    """``index`` as a slice when its positions follow each other, else itself.

    Basic indexing by a slice gives the same values as gathering by the index array, for
    less.
    """
    at = index.tolist()
    if at and at == list(range(at[0], at[0] + len(at))):
        return slice(at[0], at[0] + len(at))
    return index
