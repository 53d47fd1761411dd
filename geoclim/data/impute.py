"""Missing values: fill NaN gaps and mark every filled value.

:class:`Imputer` fills the time-varying variables of a canonical Dataset (station or grid)
with one of four methods:

* ``interpolate`` -- linear interpolation along ``time``, one series per space position;
  runs of more than ``max_gap`` consecutive missing steps, and the ends of a series, stay NaN.
  Nothing is learnt, and a gap is filled from both of its ends.
* ``knn`` -- :class:`sklearn.impute.KNNImputer`: the mean of the ``n_neighbors`` most similar
  train-period samples.
* ``mice`` -- :class:`sklearn.impute.IterativeImputer` (chained Bayesian-ridge regressions,
  ``max_iter`` rounds).
* ``regression`` -- one round of the chain with ordinary least squares: each variable is
  regressed on the others (missing inputs start at their train mean).

For ``knn``, ``mice`` and ``regression`` the feature matrix has one row per (time, space
position) sample -- the spatial dims are flattened, so grids and station networks are
handled alike -- and one column per variable (``variables`` and then ``predictors``),
followed, when ``calendar`` is on, by day-of-year sin/cos (and hour-of-day sin/cos for
sub-daily data) from :mod:`geoclim.data.calendar`. Columns are standardised with their
train-period mean and standard deviation so no variable dominates the distances because of
its units. Fitting sees only the ``period`` passed to :meth:`Imputer.fit` (KNN donors are
train samples only), subsampled to ``max_fit_samples`` rows.

A variable with no observed value in the fit period cannot be learnt: ``fit`` raises a
:class:`~geoclim.errors.DataError` naming it (drop it from ``variables``, or use
``interpolate``, which needs no fit).

``transform`` never changes an observed value: it writes only into NaN positions and sets
the boolean mask ``<var>_imputed`` (:func:`geoclim.data.variables.mask_name`) True exactly
there (OR-ed with any mask already present). Static variables are never touched.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import schema, variables
from geoclim.data.calendar import calendar_features
from geoclim.errors import ConfigError, DataError, GeoclimError
from geoclim.types import TIME

Method = Literal["interpolate", "knn", "mice", "regression"]
METHODS: tuple[str, ...] = get_args(Method)


@dataclass
class Imputer:
    """Fill missing values of time-varying variables; fit on the train period only.

    Attributes:
        method: ``interpolate``, ``knn``, ``mice`` or ``regression`` (see the module doc).
        max_gap: ``interpolate`` fills runs of at most this many consecutive missing steps;
            ``None`` fills every interior gap.
        n_neighbors: donors per sample for ``knn``.
        max_iter: imputation rounds for ``mice``.
        variables: variables to fill; ``None`` means every time-varying registered variable
            in the fit Dataset.
        predictors: extra feature columns (``knn``/``mice``/``regression``) that help but
            are not filled.
        calendar: add day-of-year (and, for sub-daily data, hour-of-day) sin/cos features.
        max_fit_samples: fit on at most this many random train rows (``None``: all).
        random_state: seed for subsampling and ``mice``.

    """

    method: Method = "interpolate"
    max_gap: int | None = 3
    n_neighbors: int = 5
    max_iter: int = 10
    variables: Sequence[str] | None = None
    predictors: Sequence[str] = ()
    calendar: bool = True
    max_fit_samples: int | None = 200_000
    random_state: int = 0
    _targets: list[str] = field(default_factory=list, init=False, repr=False)
    _columns: list[str] = field(default_factory=list, init=False, repr=False)
    _calendar_names: tuple[str, ...] = field(default=(), init=False, repr=False)
    _mean: np.ndarray | None = field(default=None, init=False, repr=False)
    _std: np.ndarray | None = field(default=None, init=False, repr=False)
    _estimator: Any = field(default=None, init=False, repr=False)
    _fitted: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        """Check the configuration."""
        if self.method not in METHODS:
            raise ConfigError(
                f"unknown imputation method {self.method!r}; valid methods are {list(METHODS)}"
            )
        if self.max_gap is not None and self.max_gap < 1:
            raise ConfigError(f"max_gap must be >= 1 or None, got {self.max_gap}")
        for name in ("n_neighbors", "max_iter"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_fit_samples is not None and self.max_fit_samples < 1:
            raise ConfigError(f"max_fit_samples must be >= 1 or None, got {self.max_fit_samples}")

    @property
    def targets(self) -> list[str]:
        """The variables this imputer fills (known after :meth:`fit`)."""
        return list(self._targets)

    def fit(self, ds: xr.Dataset, period: slice | None = None) -> Imputer:
        """Learn what the method needs from the ``period`` of ``ds`` only.

        Args:
            ds: canonical Dataset, dims ``(time, station)`` or ``(time, latitude, longitude)``.
            period: time-label slice of the train block (e.g. ``slice("2020", "2021-06")``);
                ``None`` uses all of ``ds``.

        Returns:
            ``self``, fitted.

        Raises:
            SchemaError: if ``ds`` is not canonical.
            ConfigError: if a variable is missing from ``ds`` or static.
            DataError: if the period holds no data or a variable has no observed value in it.

        """
        schema.validate(ds)
        self._targets = self._resolve_targets(ds)
        if not self._targets:
            raise ConfigError(
                f"no time-varying variable to impute; dataset has {sorted(map(str, ds.data_vars))}"
            )
        self._columns = self._targets + [p for p in self.predictors if p not in self._targets]
        _check_present(ds, self._columns)
        train = select_period(ds, period)
        if self.method != "interpolate":
            self._fit_estimator(train)
        self._fitted = True
        return self

    def transform(self, ds: xr.Dataset) -> xr.Dataset:
        """Fill the missing values of the fitted variables and mark them.

        Args:
            ds: canonical Dataset with the fitted variables (any period; same layout kind).

        Returns:
            A copy of ``ds`` where NaN values of each target variable are filled where the
            method could, plus a bool ``<var>_imputed`` of the same dims that is True exactly
            at the filled positions (OR-ed with an existing mask). Observed values, other
            variables and static fields are unchanged.

        Raises:
            GeoclimError: if the imputer is not fitted.
            SchemaError: if ``ds`` is not canonical.
            ConfigError: if a fitted variable is missing from ``ds``.

        """
        if not self._fitted:
            raise GeoclimError("Imputer is not fitted; call fit(ds, period) first")
        schema.validate(ds)
        _check_present(ds, self._columns)
        filled = self._interpolate(ds) if self.method == "interpolate" else self._predict(ds)
        out = ds.copy()
        for name, values in filled.items():
            da = ds[name]
            dims = (TIME, *schema.space_dims(ds))
            original = da.transpose(*dims).values
            new = np.where(np.isnan(original), values, original).astype(da.dtype)
            was_filled = np.isnan(original) & ~np.isnan(new)
            mask = variables.mask_name(name)
            if mask in ds:
                was_filled |= ds[mask].transpose(*dims).values.astype(bool)
            out[name] = xr.DataArray(new, dims=dims, attrs=dict(da.attrs)).transpose(*da.dims)
            out[mask] = xr.DataArray(was_filled, dims=dims).transpose(*da.dims)
        return schema.validate(out)

    def fit_transform(self, ds: xr.Dataset, period: slice | None = None) -> xr.Dataset:
        """:meth:`fit` on ``period``, then :meth:`transform` all of ``ds``."""
        return self.fit(ds, period).transform(ds)

    def report(self, ds: xr.Dataset) -> xr.Dataset:
        """Transform ``ds`` and return :func:`report` on the result for the fitted variables."""
        return report(self.transform(ds), self._targets)

    # -- internals -----------------------------------------------------------------------

    def _resolve_targets(self, ds: xr.Dataset) -> list[str]:
        if self.variables is None:
            return [
                str(n)
                for n, da in ds.data_vars.items()
                if TIME in da.dims and not variables.is_mask(str(n))
            ]
        names = list(dict.fromkeys(self.variables))
        _check_present(ds, names + list(self.predictors))
        static = [n for n in names if TIME not in ds[n].dims]
        if static:
            raise ConfigError(
                f"variable(s) {static} have no {TIME!r} dim; only time-varying "
                "variables can be imputed"
            )
        return names

    def _interpolate(self, ds: xr.Dataset) -> dict[str, np.ndarray]:
        dims = (TIME, *schema.space_dims(ds))
        out = {}
        for name in self._targets:
            da = ds[name].transpose(*dims)
            # xarray's own ``max_gap`` needs bottleneck/numbagg; counting runs is cheap here.
            values = da.interpolate_na(dim=TIME, method="linear").values
            if self.max_gap is not None:
                values = np.where(_nan_run_length(da.values) > self.max_gap, np.nan, values)
            out[name] = values
        return out

    def _features(self, ds: xr.Dataset) -> np.ndarray:
        """``(time * space, columns + calendar)`` float64 matrix, time-major rows."""
        dims = (TIME, *schema.space_dims(ds))
        n_time = ds.sizes[TIME]
        n_space = int(np.prod([ds.sizes[d] for d in dims[1:]]))
        x = np.empty((n_time * n_space, len(self._columns) + len(self._calendar_names)))
        for j, name in enumerate(self._columns):
            x[:, j] = ds[name].transpose(*dims).values.reshape(-1)
        if self._calendar_names:
            cal = calendar_features(ds[TIME].values, self._calendar_names)  # (T, F)
            x[:, len(self._columns) :] = np.repeat(cal, n_space, axis=0)
        return x

    def _fit_estimator(self, train: xr.Dataset) -> None:
        self._calendar_names = ()
        if self.calendar:
            step = schema.time_step(train)
            self._calendar_names = (("hour_sin", "hour_cos") if step.is_sub_daily else ()) + (
                ("month_sin", "month_cos") if step.is_calendar else ("doy_sin", "doy_cos")
            )
        x = self._features(train)
        observed = ~np.isnan(x[:, : len(self._columns)])
        empty = [n for n, seen in zip(self._columns, observed.any(axis=0), strict=True) if not seen]
        if empty:
            raise DataError(
                f"variable(s) {empty} have no observed value in the fit period; "
                "drop them from the imputer's variables or use 'interpolate'"
            )
        x = x[observed.any(axis=1)]
        if self.max_fit_samples is not None and len(x) > self.max_fit_samples:
            rng = np.random.default_rng(self.random_state)
            x = x[np.sort(rng.choice(len(x), self.max_fit_samples, replace=False))]
        self._mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        self._std = np.where(std > 0, std, 1.0)
        self._estimator = self._make_estimator()
        with self._quiet():
            self._estimator.fit((x - self._mean) / self._std)

    def _make_estimator(self) -> Any:
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer, KNNImputer
        from sklearn.linear_model import LinearRegression

        if self.method == "knn":
            return KNNImputer(n_neighbors=self.n_neighbors)
        if self.method == "mice":
            return IterativeImputer(max_iter=self.max_iter, random_state=self.random_state)
        return IterativeImputer(
            estimator=LinearRegression(), max_iter=1, random_state=self.random_state
        )

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        """Silence IterativeImputer's ConvergenceWarning for ``regression``, one round by design."""
        with warnings.catch_warnings():
            if self.method == "regression":
                from sklearn.exceptions import ConvergenceWarning

                warnings.simplefilter("ignore", ConvergenceWarning)
            yield

    def _predict(self, ds: xr.Dataset) -> dict[str, np.ndarray]:
        dims = (TIME, *schema.space_dims(ds))
        shape = tuple(ds.sizes[d] for d in dims)
        x = self._features(ds)
        n_targets = len(self._targets)
        rows = np.isnan(x[:, :n_targets]).any(axis=1)
        if rows.any():
            with self._quiet():
                z = self._estimator.transform((x[rows] - self._mean) / self._std)
            x[rows, :n_targets] = (z * self._std + self._mean)[:, :n_targets]
        return {name: x[:, j].reshape(shape) for j, name in enumerate(self._targets)}


def select_period(ds: xr.Dataset, period: slice | None) -> xr.Dataset:
    """Restrict ``ds`` to the time-label slice ``period`` (``None``: all of it).

    Args:
        ds: Dataset with a sorted ``time`` dim.
        period: ``slice(start, stop)`` of time labels, ends inclusive.

    Returns:
        ``ds`` restricted to ``period`` along ``time``.

    Raises:
        ConfigError: if ``period`` is not a slice.
        DataError: if no time step of ``ds`` lies in ``period``.

    """
    if period is None:
        return ds
    if not isinstance(period, slice):
        raise ConfigError(f"period must be a slice of time labels, got {period!r}")
    try:
        out = ds.sel({TIME: period})
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"cannot select period {period}: {err}") from None
    if out.sizes[TIME] == 0:
        t = ds[TIME].values
        raise DataError(
            f"period {period.start}..{period.stop} is outside the data, which "
            f"spans {pd.Timestamp(t[0])}..{pd.Timestamp(t[-1])}"
        )
    return out


def report(ds: xr.Dataset, names: Sequence[str] | None = None) -> xr.Dataset:
    """Per-variable missing-value accounting of an imputed Dataset, in percent.

    ``missing_before = imputed + missing_after``: the mask ``<var>_imputed`` tells which
    present values were filled (a variable without mask counts as nothing imputed).

    Args:
        ds: Dataset as returned by :meth:`Imputer.transform`.
        names: variables to report; ``None`` means every time-varying non-mask variable.

    Returns:
        Dataset over dim ``variable`` with float64 ``missing_before``, ``imputed`` and
        ``missing_after`` (percent of the variable's values).

    Raises:
        ConfigError: if a named variable is not in ``ds``.

    """
    if names is None:
        names = [
            str(n)
            for n, da in ds.data_vars.items()
            if TIME in da.dims and not variables.is_mask(str(n))
        ]
    names = list(names)
    _check_present(ds, names)
    before, imputed, after = [], [], []
    for name in names:
        size = ds[name].size
        missing = int(ds[name].isnull().sum())
        mask = variables.mask_name(name)
        filled = int(ds[mask].sum()) if mask in ds else 0
        after.append(100.0 * missing / size)
        imputed.append(100.0 * filled / size)
        before.append(100.0 * (missing + filled) / size)
    attrs = {"units": "%"}
    return xr.Dataset(
        {
            "missing_before": ("variable", before, attrs),
            "imputed": ("variable", imputed, attrs),
            "missing_after": ("variable", after, attrs),
        },
        coords={"variable": names},
    )


def _check_present(ds: xr.Dataset, names: Sequence[str]) -> None:
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise ConfigError(
            f"variable(s) {missing} not in dataset; dataset has {sorted(map(str, ds.data_vars))}"
        )


def _nan_run_length(values: np.ndarray) -> np.ndarray:
    """Length of the run of consecutive NaN each element belongs to, along axis 0 (0 if set).

    Vectorised: the last observed index before and the first after each position bound its
    run. ``values`` has shape ``(time, ...)``.
    """
    nan = np.isnan(values)
    n = values.shape[0]
    idx = np.arange(n).reshape((n,) + (1,) * (values.ndim - 1))
    prev = np.maximum.accumulate(np.where(nan, -1, idx), axis=0)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(nan, n, idx), axis=0), axis=0), axis=0)
    return np.where(nan, nxt - prev - 1, 0)
