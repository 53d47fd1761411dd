"""Plain reads of lazily opened variables: one backend read per variable per block, no dask.

A variable opened with ``chunks`` is a dask graph whose root is xarray's backend array (the
lazily indexed array that reads the file and applies its CF decoding: ``scale_factor``,
``add_offset``, ``_FillValue``). Where nothing but indexing follows that root (``isel``, a
sort by a coordinate), a time range of the variable is one read of the root, with the
positions the indexing maps it to: one call per variable per block instead of one dask
task per chunk. Anything else in the graph (a lazy unit conversion, ``astype``, a transpose,
arithmetic) makes :func:`plain_read` answer ``None`` and the caller reads through dask.

The positions are found by running the variable's own graph once per axis on a stand-in
for the root whose values are their own positions along that axis (no data read).

:func:`thread_safe` tells whether a dataset's files may be read in a background thread.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.array import chunk
from xarray.backends.common import BackendArray
from xarray.backends.zarr import ZarrArrayWrapper
from xarray.core.indexing import ExplicitlyIndexed
from xarray.core.indexing import ImplicitToExplicitIndexingAdapter as BackendRoot

try:  # dask's task spec (2024.12 on); without it every variable takes the dask path
    from dask._task_spec import Alias, DataNode, GraphNode, Task
    from dask.array._shuffle import _getitem as _shuffle_getitem
except ImportError:  # pragma: no cover - older dask
    TASK_SPEC = False
    INDEXING: tuple = ()
    Alias = DataNode = GraphNode = Task = ()  # type: ignore[assignment,misc]  # isinstance: False
else:
    TASK_SPEC = True
    INDEXING = (da.core.getter, chunk.getitem, _shuffle_getitem, operator.getitem)
"""Task functions that only select elements (what ``from_array``, ``isel`` and sorts make)."""

THREAD_SAFE_BACKENDS = (ZarrArrayWrapper,)
"""Backend arrays that may be read in one thread while another reads or writes a file."""

UNSAFE_LIBRARIES = ("netCDF4", "h5py", "h5netcdf")
"""Arrays of these libraries wrapped by hand (``dask.array.from_array``) are not safe either."""


@dataclass(frozen=True)
class PlainRead:
    """A variable as positions into xarray's backend array.

    Attributes:
        root: the backend array (shape of the file's variable, CF-decoding on read).
        positions: for each axis of the variable, the root position of each of its positions.
        time_axis: the axis that :meth:`read` cuts.

    """

    root: Any
    positions: tuple[np.ndarray, ...]
    time_axis: int

    def read(self, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        """Positions ``[lo, hi)`` along the time axis (all of the others), decoded.

        Args:
            lo: first time position of the variable (not of the file).
            hi: end time position.
            out: receives the values when given (shape of the result, any dtype numpy casts).

        Returns:
            The values, in the variable's dim order (``out`` when given).

        """
        wanted = list(self.positions)
        wanted[self.time_axis] = wanted[self.time_axis][lo:hi]
        bounds = tuple(
            slice(int(p.min()), int(p.max()) + 1) if p.size else slice(0, 0) for p in wanted
        )
        values = np.asarray(self.root[bounds])  # one read: the covering box of the file
        for axis, (p, box) in enumerate(zip(wanted, bounds, strict=True)):
            rel = p - box.start
            if rel.size and not (rel[0] == 0 and np.array_equal(rel, np.arange(rel.size))):
                values = _select(values, axis, rel)
        if out is None:
            return values
        np.copyto(out, values, casting="same_kind")
        return out


def _select(values: np.ndarray, axis: int, rel: np.ndarray) -> np.ndarray:
    """``values`` at positions ``rel`` of ``axis``: a view for a reversed range, else a take."""
    if rel.size > 1 and rel[0] == rel.size - 1 and np.array_equal(rel, np.arange(rel.size)[::-1]):
        return np.flip(values, axis)
    return np.take(values, rel, axis=axis)


class _Positions:
    """Stands in for a backend array: each element holds its own position along ``axis``."""

    def __init__(self, shape: tuple[int, ...], axis: int):
        self.shape, self.axis, self.ndim, self.dtype = shape, axis, len(shape), np.dtype(np.int64)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis or k is None for k in key) or len(key) > self.ndim:
            raise IndexError(f"not a plain key: {key!r}")
        key = key + (slice(None),) * (self.ndim - len(key))
        if sum(not isinstance(k, slice | int | np.integer) for k in key) > 1:
            raise IndexError("vectorised indexing over several axes")
        picked = [np.arange(n)[k] for n, k in zip(self.shape, key, strict=True)]
        shape = tuple(p.size for p in picked if np.ndim(p))
        pos = np.atleast_1d(picked[self.axis])
        kept = [i for i, p in enumerate(picked) if np.ndim(p)]
        if self.axis not in kept:  # an int on this axis: every element has that position
            return np.full(shape, int(picked[self.axis]), np.int64)
        where = kept.index(self.axis)
        view = pos.reshape([-1 if i == where else 1 for i in range(len(shape))])
        return np.broadcast_to(view, shape)


def plain_read(var: xr.DataArray, time_dim: str) -> PlainRead | None:
    """The :class:`PlainRead` of ``var``, or ``None`` where its graph is more than a read.

    Args:
        var: a dask-backed variable of a lazily opened dataset.
        time_dim: the dim :meth:`PlainRead.read` cuts.

    Returns:
        ``None`` when ``var`` is not dask-backed, its graph holds anything but one backend
        array and indexing tasks, or the root's dtype or rank differ from ``var``'s.

    """
    data = var.data
    if not TASK_SPEC or not isinstance(data, da.Array) or time_dim not in var.dims:
        return None
    graph = dict(data.__dask_graph__())
    roots = [k for k, v in graph.items() if isinstance(_value(v), BackendRoot)]
    if len(roots) != 1 or not all(_indexing_only(v) for k, v in graph.items() if k != roots[0]):
        return None
    root = _value(graph[roots[0]])
    if np.dtype(root.dtype) != data.dtype or len(root.shape) != data.ndim:
        return None
    try:
        positions = tuple(
            _axis_positions(data, graph, roots[0], root.shape, axis) for axis in range(data.ndim)
        )
    except (IndexError, TypeError, ValueError):
        return None
    return PlainRead(root, positions, var.dims.index(time_dim))


def _value(node: Any) -> Any:
    return node.value if isinstance(node, DataNode) else node


def _indexing_only(node: Any) -> bool:
    """Whether ``node`` (a graph value) only selects: indexing tasks, aliases and constants."""
    if isinstance(node, Alias | DataNode):
        return True
    if not isinstance(node, GraphNode):  # a constant; a legacy ``(func, *args)`` task is not
        return not (isinstance(node, tuple) and bool(node) and callable(node[0]))
    if not isinstance(node, Task) or node.func not in INDEXING:
        return False
    inner = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, GraphNode)]
    return all(_indexing_only(a) for a in inner)


def _axis_positions(
    data: da.Array, graph: dict, root_key: Any, shape: tuple[int, ...], axis: int
) -> np.ndarray:
    """``(n,)`` the root position along ``axis`` of each position of ``data`` along it."""
    line = data[tuple(slice(None) if a == axis else 0 for a in range(data.ndim))]
    probe = dict(line.__dask_graph__()) | {root_key: _Positions(shape, axis)}
    (chunks,) = dask.get(probe, [line.__dask_keys__()])  # synchronous, on the stand-in
    found = np.concatenate([np.asarray(c).reshape(-1) for c in chunks]).astype(np.int64)
    if found.shape != (data.shape[axis],) or found.min(initial=0) < 0:
        raise ValueError("positions do not match the variable")
    if found.size and found.max() >= shape[axis]:
        raise ValueError("positions outside the backend array")
    return found


def thread_safe(ds: xr.Dataset) -> bool:
    """Whether the files behind ``ds`` may be read in a thread while another reads netCDF.

    netCDF-C and HDF5 are not thread-safe, and netCDF4-python releases the GIL in them.
    xarray serialises opening a file and reading data, but not the metadata calls after
    the opening nor the define steps of a write (pydata/xarray#9779): a netCDF variable
    read in a background thread while another thread opens or writes a netCDF file can
    corrupt HDF5 (``NetCDF: HDF error`` or a segfault, then or later). Only zarr's backend
    array (:data:`THREAD_SAFE_BACKENDS`) is safe; arrays in memory have no file. Every
    variable is looked at, dask-backed or lazily indexed, and a dask graph down to its
    tasks' arguments (``inline_array=True`` puts the backend array there).
    """
    variables = [v._data for v in ds.variables.values()]  # ``.data`` would load a lazy one
    return all(_safe(leaf) for data in variables for leaf in _leaves(data))


def _leaves(data: Any) -> Iterator[Any]:
    """The arrays holding the values of ``data``: under xarray's wrappers, or a graph's."""
    if isinstance(data, da.Array):
        for node in dict(data.__dask_graph__()).values():
            yield from _graph_leaves(node)
    else:
        yield _unwrapped(data)


def _graph_leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, DataNode):
        node = node.value
    if isinstance(node, Task):
        for arg in (*node.args, *node.kwargs.values()):
            yield from _graph_leaves(arg)
    elif isinstance(node, tuple | list):  # a legacy ``(func, *args)`` task, or arguments
        for arg in node:
            yield from _graph_leaves(arg)
    else:
        yield _unwrapped(node)


def _unwrapped(array: Any) -> Any:
    """The array under xarray's lazy-indexing and copy-on-write wrappers."""
    while isinstance(array, ExplicitlyIndexed | BackendRoot) and not isinstance(
        array, BackendArray
    ):
        array = getattr(array, "array", None)
    return array


def _safe(leaf: Any) -> bool:
    if isinstance(leaf, BackendArray):
        return isinstance(leaf, THREAD_SAFE_BACKENDS)
    return type(leaf).__module__.split(".")[0] not in UNSAFE_LIBRARIES
