"""Categorical inputs: integer variables described by CF ``flag_values`` / ``flag_meanings``.

A variable is categorical when it carries both attributes (CF conventions, section 3.5),
for example a wind-direction sector::

    wd_cat: int8 (time, station), flag_values = [0, 1, 2, 3], flag_meanings = "N E S W"

Its values are codes, not quantities: it is never normalised or averaged. Networks receive it
one-hot, one channel per meaning, named ``<variable>=<meaning>`` (``wd_cat=N``); a missing
value (NaN after xarray decodes ``_FillValue``) is all zeros. Tree models read the same
one-hot channels as 0/1 features. A categorical variable cannot be a target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from geoclim.errors import SchemaError

Categories = dict[str, int]
"""``{meaning: flag value}`` in ``flag_values`` order."""


def is_categorical(da: xr.DataArray) -> bool:
    """Whether ``da`` carries CF ``flag_values`` and ``flag_meanings``."""
    return "flag_values" in da.attrs and "flag_meanings" in da.attrs


def categories(da: xr.DataArray, name: str | None = None) -> Categories:
    """The ``{meaning: value}`` map of a CF flag variable.

    Raises:
        SchemaError: naming the variable when the attributes disagree or are not integers.

    """
    name = name or str(da.name)
    raw = da.attrs["flag_values"]
    values = np.asarray(raw.split() if isinstance(raw, str) else raw, dtype=np.float64).ravel()
    meanings = str(da.attrs["flag_meanings"]).split()
    if values.size != len(meanings) or values.size == 0:
        raise SchemaError(
            f"variable {name!r} has {values.size} flag_values but {len(meanings)} "
            "flag_meanings; expected one meaning per value"
        )
    if not np.all(values == np.round(values)) or len(set(values)) != values.size:
        raise SchemaError(f"variable {name!r} has flag_values {list(values)}; expected unique ints")
    if len(set(meanings)) != len(meanings):
        raise SchemaError(f"variable {name!r} repeats a flag meaning in {meanings}")
    return {m: int(v) for m, v in zip(meanings, values, strict=True)}


def categories_of(ds: xr.Dataset, names: tuple[str, ...] | list[str]) -> dict[str, Categories]:
    """``{name: categories}`` of the categorical variables among ``names``."""
    return {n: categories(ds[n], n) for n in names if n in ds and is_categorical(ds[n])}


def check_values(da: xr.DataArray, name: str | None = None) -> None:
    """Refuse codes outside ``flag_values`` (NaN is missing and allowed).

    Raises:
        SchemaError: naming the variable, the unknown codes and the valid ones.

    """
    name = name or str(da.name)
    check_codes(da.values, name, categories(da, name))


def check_codes(values: np.ndarray, name: str, cats: Categories) -> None:
    """Refuse codes of ``name`` outside ``cats`` (NaN is missing and allowed).

    Raises:
        SchemaError: naming the variable, the unknown codes and the valid ones.

    """
    values = np.asarray(values, dtype=np.float64)
    found = np.unique(values[np.isfinite(values)])
    unknown = sorted(set(found.tolist()) - set(cats.values()))
    if unknown:
        raise SchemaError(
            f"categorical variable {name!r} has code(s) {unknown[:10]} outside its flag_values "
            f"{list(cats.values())} ({' '.join(cats)})"
        )


def channel_names(name: str, cats: Categories) -> list[str]:
    """One-hot channel names ``<name>=<meaning>``."""
    return [f"{name}={meaning}" for meaning in cats]


def one_hot(values: np.ndarray, cats: Categories) -> np.ndarray:
    """``(..., K)`` float32 one-hot of the codes ``values`` (NaN -> all zeros)."""
    codes = np.asarray(values, dtype=np.float64)[..., None]  # (..., 1)
    flags = np.asarray(list(cats.values()), dtype=np.float64)  # (K,)
    return (codes == flags).astype(np.float32)


def encode_channels(
    values: np.ndarray,
    names: Sequence[str],
    cats: dict[str, Categories],
    encode: Callable[[np.ndarray, str], np.ndarray],
) -> np.ndarray:
    """Per-variable values -> batch channels: ``encode`` them, or one-hot the categorical ones.

    Args:
        values: ``(..., len(names))`` physical values (codes for categorical variables).
        names: the variables along the last axis.
        cats: ``{variable: categories}`` of the categorical ones (``ForecastTask.categories``).
        encode: ``(values, name) -> normalised values`` for the continuous ones
            (``Normalizer.encode``).

    Returns:
        ``(..., C)`` float32, one channel per continuous variable and one per category
        (``ForecastTask.channel_names`` order).

    """
    parts = [
        one_hot(values[..., c], cats[name])
        if name in cats
        else np.asarray(encode(values[..., c], name), np.float32)[..., None]
        for c, name in enumerate(names)
    ]
    shape = values.shape[:-1] + (0,)
    return np.concatenate(parts, -1) if parts else np.zeros(shape, np.float32)
