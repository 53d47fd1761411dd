"""Gradient-boosted and random-forest baselines on lag features: XGBoost, LightGBM, RF.

Rows and features come from :mod:`geoclim.baselines.features`, cut from the datamodule's own
sample index and splits, so trees are trained on train samples only and predict exactly the
samples the networks predict. Targets are observed physical values (imputed ones and NaN are
never trained on), so the point objective is the squared error in the units forecasts are
scored in.

**Target: the change from persistence** (``residual: true``, default). A model learns
``x(t + k) - p(t)``, with ``p(t)`` the persistence forecast (last observed value in the input
window), and ``p(t)`` is added back. Trees are piecewise constant and cannot extrapolate
beyond the train range; the change from the last value they can learn.

**Multi-horizon strategy: direct, one model for all leads** (``strategy: shared``,
default). Each lead is predicted from the init-time information directly (never from the
model's own earlier leads, so errors do not compound), by one model per target with ``lead``
and the valid-time calendar among the features: ``L`` times fewer models than one per lead,
every model sees every lead's rows, and one ``max_train_samples`` cap bounds the cost. The
residual target is divided by its train standard deviation at each lead (multiplied back
when predicting) so the long leads, whose changes are largest, do not dominate the squared
error. On the smoke synthetic grid (30 days, NO2, 12 leads, LightGBM) this beat
``per_lead`` at every lead but the first and fitted 5-10x faster; without the scaling the
shared model lost to persistence at lead 1. ``strategy: per_lead`` (one model per target and
lead, each on up to ``max_train_samples`` rows of its lead) remains available.

**Quantiles.** With ``quantiles`` (default: the task's), LightGBM fits one
``objective=quantile`` model per level, XGBoost one ``reg:quantileerror`` model for all
levels; predictions are sorted along the quantile axis (monotone rearrangement), so quantiles
never cross. scikit-learn's random forest has no quantile objective: it predicts the
conditional mean only (asking for quantiles explicitly is an error).

Training rows are drawn at random (seeded) among the train rows with an observed target, at
most ``max_train_samples`` per model, so CPU training stays fast. Estimators get
``n_jobs`` = the cores this process may use unless ``params`` says otherwise.

**Saving.** :meth:`TreeBaseline.save` writes the fitted estimators in their library's own
format (XGBoost ``.ubj``, LightGBM model text, scikit-learn through ``joblib``, its documented
persistence) and ``tree.json`` (settings, per-lead scale, feature names); the run directory
keeps them under ``model/`` so the export serves the trees that were scored
(:meth:`TreeBaseline.load`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from geoclim.baselines import base
from geoclim.baselines.features import FeatureSpec, LagFeatures
from geoclim.errors import ConfigError, DataError

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

log = logging.getLogger(__name__)

STRATEGIES = ("shared", "per_lead")
Key = tuple[int, int | None]  # (target index, lead or None for the shared model)


class TreeBaseline:
    """Common fit/predict/save logic; subclasses supply the library's estimators.

    Subclasses implement :meth:`_fit_one` (fitted estimators of one model),
    :meth:`_predict_one` (their ``(R, Q)`` output) and :meth:`_dump_one` /
    :meth:`_load_one` (one estimator in the library's format).

    Args:
        params: keyword arguments of the library's estimator (hyper-parameters).
        features: :class:`FeatureSpec` fields (lags, rolling, calendar, static, coordinates).
        strategy: ``"shared"`` (one model for all leads) or ``"per_lead"``.
        max_train_samples: at most this many training rows per model.
        quantiles: quantile levels; ``None`` takes the task's, ``[]`` forces point forecasts.
        seed: seed for row sampling and the estimator.
        residual: learn the change from persistence, ``x(t + k) - p(t)`` with ``p(t)`` the
            last observed value in the input window, and add ``p(t)`` back when predicting
            (trees cannot extrapolate past the train range; the change can be learnt).
        predict_chunk_rows: rows per feature block at prediction time (bounds memory).
        kind: config tag, must be ``"baseline"``.

    """

    name = "tree"
    default_params: dict[str, Any] = {}
    supports_quantiles = True

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        features: FeatureSpec | Mapping[str, Any] | None = None,
        strategy: str = "shared",
        max_train_samples: int = 200_000,
        quantiles: list[float] | tuple[float, ...] | None = None,
        seed: int = 0,
        residual: bool = True,
        predict_chunk_rows: int = 500_000,
        kind: str = "baseline",
    ):
        base.check_kind(kind)
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown tree strategy {strategy!r}; valid are {list(STRATEGIES)}")
        if max_train_samples < 1 or predict_chunk_rows < 1:
            raise ConfigError(
                f"max_train_samples ({max_train_samples}) and predict_chunk_rows "
                f"({predict_chunk_rows}) must be >= 1"
            )
        if quantiles and not self.supports_quantiles:
            raise ConfigError(
                f"{self.name} has no quantile objective; set quantiles: [] or "
                "use model=lightgbm or model=xgboost"
            )
        self.params = {"n_jobs": available_cores(), **self.default_params, **dict(params or {})}
        self.spec = FeatureSpec.from_config(features)
        self.strategy = strategy
        self.max_train_samples = int(max_train_samples)
        self.quantiles_arg = None if quantiles is None else tuple(float(q) for q in quantiles)
        self.seed = int(seed)
        self.residual = bool(residual)
        self.predict_chunk_rows = int(predict_chunk_rows)
        self.quantiles: tuple[float, ...] = ()
        self.features: LagFeatures | None = None
        self.estimators: dict[Key, list[Any]] = {}  # fitted estimator(s) of each model
        self.lead_scale = np.ones((0, 0))  # (C, L) target scale per lead (shared strategy)

    # -- library hooks ------------------------------------------------------------------
    suffix = ""  # file name ending of one saved estimator

    def _fit_one(self, x: np.ndarray, y: np.ndarray) -> list[Any]:
        """Fit on ``x (R, F)``, ``y (R,)``; return the fitted estimator(s) of one model."""
        raise NotImplementedError

    def _predict_one(self, estimators: list[Any], x: np.ndarray) -> np.ndarray:
        """``(R, Q)`` output of one model's estimators for ``x (R, F)``."""
        raise NotImplementedError

    def _dump_one(self, estimator: Any) -> bytes:
        """One estimator in the library's own file format."""
        raise NotImplementedError

    def _load_one(self, path: Path) -> Any:
        raise NotImplementedError

    # -- fit ----------------------------------------------------------------------------
    def fit(self, dm: GeoDataModule) -> TreeBaseline:
        """Fit one model per target (and per lead with ``per_lead``) on train rows."""
        dm.setup()
        self.quantiles = self._resolve_quantiles(dm)
        self.features = LagFeatures(dm, self.spec, with_lead=self.strategy == "shared")
        truth = base.physical_targets(dm, observed_only=True)  # (T, H, W, C)
        offset = self._offset(dm)  # (T, H, W, C) persistence, or None
        t, y, x = base.split_samples(dm, "train")
        patch, n_leads = base.patch_shape(dm), dm.spec.lead_steps
        rng = np.random.default_rng(self.seed)
        leads: list[int | None] = (
            [None] if self.strategy == "shared" else list(range(1, n_leads + 1))
        )
        self.estimators = {}
        self.lead_scale = np.ones((len(dm.task.targets), n_leads))
        for c, target in enumerate(dm.task.targets):
            for lead in leads:
                rows = _draw_rows(
                    rng,
                    t,
                    y,
                    x,
                    patch,
                    n_leads,
                    lead,
                    truth[..., c],
                    None if offset is None else offset[..., c],
                    self.max_train_samples,
                )
                if rows[0].size == 0:
                    raise DataError(f"{self.name}: no observed {target!r} in the train block")
                start = time.perf_counter()
                features = self.features.build(*rows)
                target_values = truth[rows[0] + rows[3], rows[1], rows[2], c]
                if offset is not None:
                    target_values = target_values - offset[rows[0], rows[1], rows[2], c]
                if lead is None:  # one model for all leads: every lead weighs the same
                    self.lead_scale[c] = _lead_scale(target_values, rows[3], n_leads)
                    target_values = target_values / self.lead_scale[c, rows[3] - 1]
                self.estimators[(c, lead)] = self._fit_one(features, target_values)
                log.info(
                    "%s: fitted %s%s on %d rows x %d features in %.1fs",
                    self.name,
                    target,
                    "" if lead is None else f" lead {lead}",
                    features.shape[0],
                    features.shape[1],
                    time.perf_counter() - start,
                )
        return self

    def _offset(self, dm: GeoDataModule) -> np.ndarray | None:
        """Persistence ``p(t)`` in physical units when learning residuals, else ``None``."""
        if not self.residual:
            return None
        from geoclim.baselines.persistence import last_observed

        return last_observed(base.physical_targets(dm), dm.spec.input_steps)

    def _resolve_quantiles(self, dm: GeoDataModule) -> tuple[float, ...]:
        if self.quantiles_arg is not None:
            qs = self.quantiles_arg
            if any(not 0 < q < 1 for q in qs) or list(qs) != sorted(set(qs)):
                raise ConfigError(f"{self.name} quantiles {list(qs)} must be increasing, in (0, 1)")
            return qs
        if dm.task.quantiles and not self.supports_quantiles:
            log.warning(
                "%s has no quantile objective: predicting the conditional mean, not "
                "the task's quantiles %s",
                self.name,
                list(dm.task.quantiles),
            )
            return ()
        return tuple(dm.task.quantiles)

    # -- predict ------------------------------------------------------------------------
    def predict(self, dm: GeoDataModule, split: str) -> xr.Dataset:
        """Forecasts of the samples ``dm.index[split]``: ``(N, L, C[, Q], h, w)`` -> Dataset."""
        if not self.estimators or self.features is None:
            raise DataError(f"{self.name} is not fitted; call fit(dm) first")
        t, y, x = base.split_samples(dm, split)
        (ph, pw), n_leads = base.patch_shape(dm), dm.spec.lead_steps
        n_q = max(len(self.quantiles), 1)
        n_out = len(dm.task.targets)
        pred = np.full((t.size, n_leads, n_out, n_q, ph, pw), np.nan, np.float32)
        chunk = max(1, self.predict_chunk_rows // (ph * pw * n_leads))
        offset = self._offset(dm)
        for s0 in range(0, t.size, chunk):  # blocks of samples bound the feature memory
            s = np.arange(s0, min(s0 + chunk, t.size))
            # rows ordered (lead, sample, dy, dx) so each lead's rows are contiguous
            k, n, dy, dx = (
                a.ravel()
                for a in np.meshgrid(
                    np.arange(1, n_leads + 1), s, np.arange(ph), np.arange(pw), indexing="ij"
                )
            )
            feats = self.features.build(t[n], y[n] + dy, x[n] + dx, k)
            for c in range(n_out):
                out = self._predict_rows(c, feats, n_leads)  # (L * S * h * w, Q)
                out = out.reshape(n_leads, s.size, ph, pw, n_q)
                out = out * self.lead_scale[c][:, None, None, None, None]
                if offset is not None:  # p(t) of each row's cell, constant over leads
                    out = out + offset[t[n], y[n] + dy, x[n] + dx, c].reshape(
                        n_leads, s.size, ph, pw, 1
                    )
                pred[s, :, c] = np.transpose(out, (1, 0, 4, 2, 3))
        if self.quantiles:
            pred = np.sort(pred, axis=3)  # monotone rearrangement: no crossing
            return base.to_predictions(dm, pred, t, y, x, quantiles=self.quantiles, model=self.name)
        return base.to_predictions(dm, pred[:, :, :, 0], t, y, x, model=self.name)

    def _predict_rows(self, c: int, feats: np.ndarray, n_leads: int) -> np.ndarray:
        if self.strategy == "shared":
            return self._predict_one(self.estimators[(c, None)], feats)
        per = feats.shape[0] // n_leads
        return np.concatenate(
            [
                self._predict_one(self.estimators[(c, k)], feats[(k - 1) * per : k * per])
                for k in range(1, n_leads + 1)
            ]
        )

    # -- save / load (geoclim.baselines.tree_store) ------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the fitted model to ``folder`` (:func:`~geoclim.baselines.tree_store.save`)."""
        from geoclim.baselines import tree_store

        return tree_store.save(self, folder)

    @classmethod
    def load(cls, folder: str | os.PathLike, dm: GeoDataModule) -> TreeBaseline:
        """The model :meth:`save` wrote (:func:`~geoclim.baselines.tree_store.load`)."""
        from geoclim.baselines import tree_store

        return tree_store.load(folder, dm, cls)


def _lead_scale(values: np.ndarray, lead: np.ndarray, n_leads: int) -> np.ndarray:
    """``(L,)`` standard deviation of the training targets of each lead (1 where undefined).

    Dividing a shared model's targets by it stops the long leads, whose errors are largest,
    from dominating the squared-error fit at the expense of the short ones.
    """
    count = np.bincount(lead - 1, minlength=n_leads).astype(float)
    total = np.bincount(lead - 1, values, minlength=n_leads)
    square = np.bincount(lead - 1, values**2, minlength=n_leads)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = square / count - (total / count) ** 2
    std = np.sqrt(np.clip(var, 0.0, None))
    return np.where((count > 1) & (std > 0), std, 1.0)


def available_cores() -> int:
    """Cores this process may run on, at most ``OMP_NUM_THREADS`` when that is set.

    The libraries' own defaults can oversubscribe them (LightGBM's OpenMP default was 20x
    slower on a 2-core container). ``OMP_NUM_THREADS`` is the usual way to give a process a
    thread budget (a job scheduler's, or several processes sharing the machine); a tree
    library given ``n_jobs`` explicitly would ignore it. Two OpenMP threads of LightGBM per
    process on two busy cores fitted 3-10x slower than one.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    budget = os.environ.get("OMP_NUM_THREADS", "").strip()
    if budget.isdigit() and int(budget) > 0:
        cores = min(cores, int(budget))
    return cores


def _draw_rows(
    rng: np.random.Generator,
    t: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    patch: tuple[int, int],
    n_leads: int,
    lead: int | None,
    truth: np.ndarray,
    offset: np.ndarray | None,
    cap: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random rows ``(t, y_cell, x_cell, lead)`` with an observed target, at most ``cap``.

    With ``offset`` (residual learning) the offset at the init time must be defined too.

    Rows are the flat product (sample, dy, dx, lead) of the train index; a random candidate
    set three times the cap is drawn, rows with a missing target dropped, ``cap`` kept.
    """
    ph, pw = patch
    leads = n_leads if lead is None else 1
    total = t.size * ph * pw * leads
    if total <= 3 * cap:
        flat = rng.permutation(total)
    else:
        flat = np.unique(rng.integers(0, total, size=3 * cap))
        rng.shuffle(flat)
    rest, k = np.divmod(flat, leads)
    rest, dx = np.divmod(rest, pw)
    n, dy = np.divmod(rest, ph)
    k = k + 1 if lead is None else np.full_like(k, lead)
    rows = (t[n], y[n] + dy, x[n] + dx, k)
    ok = np.isfinite(truth[rows[0] + k, rows[1], rows[2]])
    if offset is not None:
        ok &= np.isfinite(offset[rows[0], rows[1], rows[2]])
    keep = np.flatnonzero(ok)[:cap]
    return tuple(a[keep] for a in rows)  # type: ignore[return-value]


class XGBoostBaseline(TreeBaseline):
    """XGBoost (``hist`` trees); quantiles via ``reg:quantileerror`` in one model."""

    name = "xgboost"
    default_params = {
        "n_estimators": 300,
        "max_depth": 6,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "tree_method": "hist",
    }

    suffix = ".ubj"  # XGBoost's binary JSON model format

    def _fit_one(self, x: np.ndarray, y: np.ndarray) -> list[Any]:
        import xgboost as xgb

        params = {"random_state": self.seed, **self.params}
        if self.quantiles:
            params.update(objective="reg:quantileerror", quantile_alpha=np.asarray(self.quantiles))
        model = xgb.XGBRegressor(**params)
        model.fit(x, y)
        return [model]

    def _predict_one(self, estimators: list[Any], x: np.ndarray) -> np.ndarray:
        return np.asarray(estimators[0].predict(x)).reshape(x.shape[0], -1)

    def _dump_one(self, estimator: Any) -> bytes:
        return bytes(estimator.get_booster().save_raw("ubj"))

    def _load_one(self, path: Path) -> Any:
        import xgboost as xgb

        model = xgb.XGBRegressor()
        model.load_model(bytearray(path.read_bytes()))
        return model


class LightGBMBaseline(TreeBaseline):
    """LightGBM; quantiles via ``objective=quantile``, one model per level."""

    name = "lightgbm"
    default_params = {
        "n_estimators": 300,
        "num_leaves": 31,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "min_child_samples": 20,
        "verbose": -1,
    }

    suffix = ".txt"  # LightGBM's model text format

    def _fit_one(self, x: np.ndarray, y: np.ndarray) -> list[Any]:
        import lightgbm as lgb

        params: dict[str, Any] = {"random_state": self.seed, **self.params}
        levels = self.quantiles or (None,)
        models = []
        for q in levels:
            extra: dict[str, Any] = {} if q is None else {"objective": "quantile", "alpha": q}
            models.append(lgb.LGBMRegressor(**params, **extra).fit(x, y).booster_)
        return models

    def _predict_one(self, estimators: list[Any], x: np.ndarray) -> np.ndarray:
        return np.stack([m.predict(x) for m in estimators], axis=-1)

    def _dump_one(self, estimator: Any) -> bytes:
        return estimator.model_to_string().encode("utf-8")

    def _load_one(self, path: Path) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))


class RandomForestBaseline(TreeBaseline):
    """scikit-learn random forest (point forecasts only; handles NaN features natively)."""

    name = "random_forest"
    supports_quantiles = False
    default_params = {
        "n_estimators": 100,
        "max_depth": 12,
        "min_samples_leaf": 10,
        "max_features": 0.5,
    }

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        features: FeatureSpec | Mapping[str, Any] | None = None,
        strategy: str = "shared",
        max_train_samples: int = 50_000,  # a forest's fit time grows with rows
        **kwargs: Any,
    ):
        super().__init__(params, features, strategy, max_train_samples, **kwargs)

    suffix = ".joblib"  # scikit-learn's documented persistence

    def _fit_one(self, x: np.ndarray, y: np.ndarray) -> list[Any]:
        from sklearn.ensemble import RandomForestRegressor

        model = RandomForestRegressor(**{"random_state": self.seed, **self.params})
        model.fit(x, y)
        return [model]

    def _predict_one(self, estimators: list[Any], x: np.ndarray) -> np.ndarray:
        return estimators[0].predict(x)[:, None]

    def _dump_one(self, estimator: Any) -> bytes:
        import io

        import joblib

        buffer = io.BytesIO()
        joblib.dump(estimator, buffer)
        return buffer.getvalue()

    def _load_one(self, path: Path) -> Any:
        import joblib

        return joblib.load(path)
