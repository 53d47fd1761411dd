"""Windows by index: a :class:`WindowSpec`, an integer :class:`SampleIndex` and batch gathering.

Arrays are held once, channels-last, as ``(T, H, W, C)`` float32 in normalised space (station
networks are ``(T, S, 1, C)``); a sample is the integer triple ``(t, y, x)``: ``t`` the init
position (the last input step), ``(y, x)`` the top-left cell of its spatial patch. A batch is
gathered with one fancy-indexing operation per field, so there is no per-sample Python, no
pandas and no copy of the series per window. No torch here: :mod:`geoclim.data.datasets`
wraps the gathered numpy arrays into tensors.

Time layout of a sample at init position ``t`` (``T_in`` inputs, ``L`` leads)::

    inputs  : t - T_in + 1, ..., t          (the init time is the last input)
    targets : t + 1, ..., t + L             (lead k is k steps after init)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import NamedTuple

import numpy as np

from geoclim.errors import ConfigError, DataError
from geoclim.types import IntArray


@dataclass(frozen=True)
class WindowSpec:
    """How samples are cut.

    Attributes:
        input_steps: history length fed to the encoder (includes the init time).
        lead_steps: forecast horizon in time steps.
        stride: spacing between consecutive init times.
        patch: spatial tile edge; 1 means pointwise (LSTM, TFT), ``None`` the whole grid.
        patch_stride: spacing between tiles (defaults to ``patch``: non-overlapping tiles).

    """

    input_steps: int
    lead_steps: int
    stride: int = 1
    patch: int | None = 1
    patch_stride: int | None = None

    def __post_init__(self) -> None:
        for name in ("input_steps", "lead_steps", "stride"):
            if getattr(self, name) < 1:
                raise ConfigError(f"window.{name} must be >= 1, got {getattr(self, name)}")
        if self.patch is not None and self.patch < 1:
            raise ConfigError(f"window.patch must be >= 1 or null (whole grid), got {self.patch}")
        if self.patch_stride is not None and self.patch_stride < 1:
            raise ConfigError(f"window.patch_stride must be >= 1, got {self.patch_stride}")

    def patch_shape(self, grid_shape: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` of one sample's spatial patch on a grid of ``grid_shape``."""
        h, w = grid_shape
        if self.patch is None:
            return h, w
        if self.patch > h or self.patch > w:
            raise ConfigError(
                f"window.patch = {self.patch} is larger than the grid {h} x {w}; use a smaller "
                "patch or patch: null for the whole grid"
            )
        return self.patch, self.patch


@dataclass(frozen=True)
class SampleIndex:
    """Integer positions of every sample, stored flat as ``(t * H + y) * W + x``.

    One int32 (int64 on very large data) per sample keeps the index far smaller than the data.
    """

    flat: np.ndarray
    grid_shape: tuple[int, int]

    def __len__(self) -> int:
        return int(self.flat.size)

    def decode(self, rows: np.ndarray | slice | None = None) -> tuple[IntArray, IntArray, IntArray]:
        """``(t, y, x)`` int64 arrays of the samples at ``rows`` (all by default)."""
        flat = self.flat if rows is None else self.flat[rows]
        h, w = self.grid_shape
        ty, x = np.divmod(flat.astype(np.int64), w)
        t, y = np.divmod(ty, h)
        return t, y, x

    @property
    def time(self) -> IntArray:
        """Init positions of all samples."""
        return self.decode()[0]


def patch_origins(length: int, patch: int, stride: int) -> np.ndarray:
    """Top-left offsets of tiles of ``patch`` cells along an axis of ``length`` cells.

    Tiles step by ``stride``; a last tile flush with the edge is added so every cell is covered.
    """
    origins = np.arange(0, length - patch + 1, stride)
    if origins[-1] != length - patch:
        origins = np.append(origins, length - patch)
    return origins


def build_index(
    target_valid: np.ndarray | None,
    grid_shape: tuple[int, int],
    n_time: int,
    spec: WindowSpec,
    time_range: tuple[int, int],
    *,
    min_target_fraction: float = 0.0,
) -> SampleIndex:
    """Index every sample whose whole window lies in ``time_range``.

    Args:
        target_valid: ``(T, H, W)`` bool, True where every target is observed (and counts);
            ``None`` when all are.
        grid_shape: ``(H, W)``; a station network is ``(S, 1)``.
        n_time: length of the time axis.
        spec: the window spec.
        time_range: ``[start, stop)`` positions of the split.
        min_target_fraction: keep a sample when at least this fraction of its target values
            (leads x patch cells) is valid; a sample with no valid target is always dropped.

    Returns:
        The sample index, ordered by time, then row, then column.

    """
    start, stop = max(time_range[0], 0), min(time_range[1], n_time)
    h, w = grid_shape
    ph, pw = spec.patch_shape(grid_shape)
    inits = np.arange(start + spec.input_steps - 1, stop - spec.lead_steps, spec.stride)
    if inits.size == 0:
        raise DataError(
            f"no window fits in time positions [{start}, {stop}): one needs input_steps + "
            f"lead_steps = {spec.input_steps + spec.lead_steps} steps"
        )
    pstride_y = spec.patch_stride or ph
    pstride_x = spec.patch_stride or pw
    ys = np.arange(h) if ph == 1 else patch_origins(h, ph, pstride_y)
    xs = np.arange(w) if pw == 1 else patch_origins(w, pw, pstride_x)
    need = max(1, int(np.ceil(min_target_fraction * spec.lead_steps * ph * pw)))

    lead = spec.lead_steps

    def counts(t: np.ndarray) -> np.ndarray:
        """``(len(t), H, W)`` int32: valid target steps in ``(t, t + lead]`` per cell."""
        assert target_valid is not None
        if spec.stride > lead:  # sparse inits: sum each init's own leads, not the gaps
            steps = (t[:, None] + np.arange(1, lead + 1)).ravel()  # (len(t) * L,)
            return target_valid[steps].reshape(t.size, lead, h, w).sum(1, dtype=np.int32)
        # dense inits: one cumulative sum over the span of this chunk
        base = t[0] + 1
        local = np.zeros((t[-1] + lead + 1 - base + 1, h, w), dtype=np.int32)
        np.cumsum(target_valid[base : t[-1] + lead + 1], axis=0, out=local[1:])
        return local[t - t[0] + lead] - local[t - t[0]]

    def kept(t: np.ndarray) -> np.ndarray:
        """``(len(t), len(ys), len(xs))`` bool: which samples of init times ``t`` to keep."""
        if target_valid is None:
            return np.ones((t.size, ys.size, xs.size), dtype=bool)
        c = counts(t)
        if (ph, pw) != (1, 1):
            c = _box_sum(c, ph, pw)[:, ys][:, :, xs]
        return c >= need

    # Two passes over chunks of init times: count (keeping each chunk's verdicts as bits, an
    # eighth of a byte per candidate), then fill a preallocated index. The temporaries stay a
    # small fraction of the data (scripts/bench_windows.py measures it).
    chunks = [inits[lo : lo + _CHUNK] for lo in range(0, inits.size, _CHUNK)]
    verdicts, total = [], 0
    for t in chunks:
        keep = kept(t)
        total += int(np.count_nonzero(keep))
        verdicts.append(np.packbits(keep.ravel()))
    dtype = np.int32 if n_time * h * w < np.iinfo(np.int32).max else np.int64
    flat = np.empty(total, dtype=dtype)
    pos = 0
    for t, bits in zip(chunks, verdicts, strict=True):
        n = t.size * ys.size * xs.size
        keep = np.unpackbits(bits, count=n).view(bool).reshape(t.size, ys.size, xs.size)
        it, iy, ix = np.nonzero(keep)
        flat[pos : pos + it.size] = (t[it].astype(np.int64) * h + ys[iy]) * w + xs[ix]
        pos += it.size
    return SampleIndex(flat, (h, w))


_CHUNK = 64


def _box_sum(counts: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Sum over every ``ph x pw`` box; entry ``[.., y, x]`` is the box with top-left (y, x)."""
    c = np.pad(counts, ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
    return c[:, ph:, pw:] - c[:, :-ph, pw:] - c[:, ph:, :-pw] + c[:, :-ph, :-pw]


_FINITE_BYTES = 1 << 24
"""Bytes of ``dynamic`` tested for NaN at a time (the temporaries stay small)."""


class KnownPlan(NamedTuple):
    """The known-future channels of :class:`WindowArrays`, resolved for :func:`gather`.

    Attributes:
        calendar: ``(T, K_cal)`` the calendar columns the known channels read, contiguous.
        calendar_at: known-channel positions filled from ``calendar`` (in its column order).
        dynamic_at: known-channel positions filled from the dynamic window.
        dynamic_from: the dynamic channel each of ``dynamic_at`` reads.

    """

    calendar: np.ndarray
    calendar_at: list[int]
    dynamic_at: list[int]
    dynamic_from: list[int]


@dataclass
class WindowArrays:
    """The arrays a batch is gathered from (normalised, channels-last, held once).

    Attributes:
        dynamic: ``(T, H, W, C_dyn)`` float32; channels are the task's past variables
            (targets first) then future-only variables. NaN marks missing.
        calendar: ``(T, C_cal)`` float32 calendar encodings.
        static: ``(H, W, C_static)`` float32.
        n_past: number of past channels (``dynamic[..., :n_past]``).
        n_targets: number of targets (``dynamic[..., :n_targets]``).
        known_sources: for each known-future channel, ``("dynamic", c)`` or ``("calendar", c)``.
        exclude: optional ``(T, H, W, C_out)`` bool, True where a target must not count
            (imputed values when training excludes them).

    """

    dynamic: np.ndarray
    calendar: np.ndarray
    static: np.ndarray
    n_past: int
    n_targets: int
    known_sources: tuple[tuple[str, int], ...]
    exclude: np.ndarray | None = None

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the arrays."""
        return self.dynamic.shape[1], self.dynamic.shape[2]

    @cached_property
    def all_finite(self) -> bool:
        """Whether ``dynamic`` and ``static`` hold no NaN (then gathers skip the NaN fill).

        Found once, a block of times at a time, so the temporaries stay small.
        """
        steps = max(1, _FINITE_BYTES // max(1, self.dynamic[:1].nbytes))
        rows = range(0, self.dynamic.shape[0], steps)
        return bool(np.isfinite(self.static).all()) and all(
            np.isfinite(self.dynamic[lo : lo + steps]).all() for lo in rows
        )

    @cached_property
    def known_plan(self) -> KnownPlan:
        """Where each known-future channel comes from, resolved once for every batch."""
        cal = [(k, c) for k, (src, c) in enumerate(self.known_sources) if src == "calendar"]
        dyn = [(k, c) for k, (src, c) in enumerate(self.known_sources) if src == "dynamic"]
        return KnownPlan(
            calendar=np.ascontiguousarray(self.calendar[:, [c for _, c in cal]]),
            calendar_at=[k for k, _ in cal],
            dynamic_at=[k for k, _ in dyn],
            dynamic_from=[c for _, c in dyn],
        )

    def target_valid(self) -> np.ndarray:
        """``(T, H, W)`` True where every target is observed and counts."""
        valid = np.isfinite(self.dynamic[..., : self.n_targets]).all(-1)
        if self.exclude is not None:
            valid &= ~self.exclude.any(-1)
        return valid


def gather(
    arrays: WindowArrays,
    spec: WindowSpec,
    t: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    *,
    fill_missing: bool = True,
) -> dict[str, np.ndarray]:
    """Gather a batch of samples into the Batch layout (numpy).

    The inputs and the leads of every sample are copied by one ``np.take`` each of
    ``C_dyn``-channel rows from the ``(T * H * W, C_dyn)`` view of the dynamic array, with one
    flat row number per (sample, step, cell): no multi-array fancy indexing, so the gather
    costs little more than copying the bytes (``scripts/bench_windows.py`` compares it with a
    strided-view gather of the same windows). Point samples whose inputs are all the dynamic
    channels get ``past`` straight from the take, with no further copy.

    Args:
        arrays: source arrays.
        spec: window spec.
        t: ``(B,)`` init positions.
        y: ``(B,)`` patch origin rows (station positions).
        x: ``(B,)`` patch origin columns.
        fill_missing: replace NaN inputs by 0, the train mean in normalised space (networks);
            ``False`` keeps them (tree models route missing values themselves).

    Returns:
        ``past (B, T_in, C_in, h, w)``, ``known_future (B, L, C_known, h, w)``,
        ``known_past (B, T_in, C_known, h, w)`` (the known inputs at the input steps, for
        encoders that read them), ``static (B, C_static, h, w)``, ``target`` and
        ``target_mask`` ``(B, L, C_out, h, w)`` (missing targets are 0 with mask 0) and the
        positions.

    Raises:
        DataError: a window reaching outside the time axis of ``arrays``.

    """
    t_in, n_targets = spec.input_steps, arrays.n_targets
    _check_inside(arrays.dynamic.shape[0], spec, t)
    rows = window_rows(arrays.grid_shape, spec, t, y, x)  # (B, T_in + L, h, w)
    flat = arrays.dynamic.reshape(-1, arrays.dynamic.shape[-1])  # (T * H * W, C_dyn), a view
    # mode="clip" skips numpy's per-index bounds check; _check_inside has checked the windows
    past = np.take(flat, rows[:, :t_in], axis=0, mode="clip")  # (B, T_in, h, w, C_dyn)
    future = np.take(flat, rows[:, t_in:], axis=0, mode="clip")  # (B, L, h, w, C_dyn)
    mask = np.isfinite(future[..., :n_targets])  # (B, L, h, w, C_out)
    if arrays.exclude is not None:
        excluded = arrays.exclude.reshape(-1, n_targets)
        mask &= ~np.take(excluded, rows[:, t_in:], axis=0, mode="clip")
    target = np.where(mask, future[..., :n_targets], np.float32(0.0))
    static = _static(arrays.static, y, x, _layout(arrays.grid_shape, spec))  # (B, h, w, C_st)
    if fill_missing and not arrays.all_finite:
        for a in (past, future, static):  # fresh copies: filled in place
            np.nan_to_num(a, copy=False, nan=0.0, posinf=0.0, neginf=0.0)  # missing: 0
    return {
        "past": _channels_first(past[..., : arrays.n_past]),
        "known_future": _known(arrays, t, 1, future),
        "known_past": _known(arrays, t, 1 - t_in, past),
        "static": _channels_first(static[:, None])[:, 0],
        "target": _channels_first(target),
        "target_mask": _channels_first(mask.astype(np.float32)),
        "time_idx": t.astype(np.int64),
        "lat_idx": y.astype(np.int64),
        "lon_idx": x.astype(np.int64),
    }


def _check_inside(n_time: int, spec: WindowSpec, t: np.ndarray) -> None:
    """Raise unless every window of inits ``t`` lies in ``[0, n_time)`` (O(B), no per-row check)."""
    if t.size and (t.min() - spec.input_steps + 1 < 0 or t.max() + spec.lead_steps >= n_time):
        raise DataError(
            f"windows of init positions {int(t.min())}..{int(t.max())} reach outside the "
            f"{n_time} time steps of the arrays: each needs {spec.input_steps - 1} steps before "
            f"its init and {spec.lead_steps} after"
        )


class _Layout(NamedTuple):
    """Offsets every batch of one (grid, spec) shares, computed once (:func:`_layout`)."""

    offsets: np.ndarray  # (T_in + L, h, w) flat offsets of a window from its patch origin
    patch_y: np.ndarray  # (h, 1) row offsets in a patch
    patch_x: np.ndarray  # (w,) column offsets in a patch


@lru_cache(maxsize=64)
def _layout(grid_shape: tuple[int, int], spec: WindowSpec) -> _Layout:
    h, w = grid_shape
    ph, pw = spec.patch_shape(grid_shape)
    patch_y, patch_x = np.arange(ph)[:, None], np.arange(pw)
    steps = np.arange(1 - spec.input_steps, spec.lead_steps + 1) * (h * w)  # (T_in + L,)
    offsets = steps[:, None, None] + (patch_y * w + patch_x)  # (T_in + L, h, w)
    for a in (offsets, patch_y, patch_x):
        a.flags.writeable = False  # shared by every batch
    return _Layout(offsets, patch_y, patch_x)


def _static(static: np.ndarray, y: np.ndarray, x: np.ndarray, layout: _Layout) -> np.ndarray:
    """``(B, h, w, C_static)`` static patches at origins ``(y, x)``."""
    if static.shape[-1] == 0:  # no static inputs: nothing to gather
        return np.empty((y.size, layout.patch_y.size, layout.patch_x.size, 0), np.float32)
    return static[y[:, None, None] + layout.patch_y, x[:, None, None] + layout.patch_x]


def window_rows(
    grid_shape: tuple[int, int], spec: WindowSpec, t: np.ndarray, y: np.ndarray, x: np.ndarray
) -> np.ndarray:
    """``(B, T_in + L, h, w)`` flat positions ``(t * H + y) * W + x`` of each sample's window.

    Steps run from the first input (``t - T_in + 1``) to the last lead (``t + L``).
    """
    h, w = grid_shape
    origin = (t.astype(np.int64) * h + y) * w + x  # (B,): the patch origin at the init step
    return origin[:, None, None, None] + _layout(grid_shape, spec).offsets  # one allocation


def _known(arrays: WindowArrays, t: np.ndarray, first: int, window: np.ndarray) -> np.ndarray:
    """``(B, S, C_known, h, w)`` known channels at steps ``t + first .. t + first + S - 1``.

    Args:
        arrays: source arrays (calendar columns and where each known channel comes from).
        t: ``(B,)`` init positions (windows already checked to lie inside the arrays).
        first: offset of the first step from the init (``1``: the leads, ``1 - T_in``: the
            input steps).
        window: ``(B, S, h, w, C_dyn)`` the dynamic window over the same steps.
    """
    b, n_steps, ph, pw, _ = window.shape
    plan = arrays.known_plan
    if plan.calendar_at:
        steps = t[:, None] + np.arange(first, first + n_steps)  # (B, S)
        values = np.take(plan.calendar, steps, axis=0, mode="clip")  # (B, S, K_cal)
        if not plan.dynamic_at and ph == pw == 1:  # the usual point case: already the layout
            return values[:, :, :, None, None]
    out = np.empty((b, n_steps, ph, pw, len(arrays.known_sources)), np.float32)
    if plan.calendar_at:
        out[..., plan.calendar_at] = values[:, :, None, None]
    if plan.dynamic_at:
        out[..., plan.dynamic_at] = window[..., plan.dynamic_from]
    return _channels_first(out)


def _channels_first(a: np.ndarray) -> np.ndarray:
    """``(B, T, h, w, C)`` -> contiguous ``(B, T, C, h, w)``."""
    b, t, ph, pw, c = a.shape
    if ph == pw == 1:  # point samples: the memory order of (B, T, C); no copy if contiguous
        return np.ascontiguousarray(a.reshape(b, t, c, 1, 1))
    return np.ascontiguousarray(np.moveaxis(a, -1, 2))
